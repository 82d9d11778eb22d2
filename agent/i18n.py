"""Operator-facing labels of the agent itself, in Kazakh, Russian and English.

Reason texts of quota and compliance decisions live beside their codes in ``kuat.quota.messages``;
this catalogue holds what the agent's own screens and logs say.
"""

from __future__ import annotations

from typing import Literal

Lang = Literal["kk", "ru", "en"]
LANGS: tuple[Lang, ...] = ("kk", "ru", "en")

CATALOG: dict[str, dict[Lang, str]] = {
    "title": {
        "kk": "kuat — цифрлық майнинг фермасы",
        "ru": "kuat — ферма цифрового майнинга",
        "en": "kuat — digital mining farm",
    },
    "cycle": {"kk": "Цикл", "ru": "Цикл", "en": "Cycle"},
    "miners_up": {
        "kk": "Жұмыс істеп тұрған майнерлер",
        "ru": "Майнеры в работе",
        "en": "Miners up",
    },
    "hashrate": {"kk": "Жалпы хешрейт", "ru": "Общий хешрейт", "en": "Total hashrate"},
    "metered_power": {
        "kk": "Есептегіш бойынша қуат",
        "ru": "Мощность по счётчику",
        "en": "Metered power",
    },
    "pdu_power": {"kk": "PDU қуаты", "ru": "Мощность PDU", "en": "PDU power"},
    "energy_hour": {
        "kk": "Осы сағаттағы энергия / квота",
        "ru": "Энергия за час / квота",
        "en": "Energy this hour / allocation",
    },
    "forecast": {
        "kk": "Сағат соңына болжам",
        "ru": "Прогноз на конец часа",
        "en": "Forecast to end of hour",
    },
    "quota_status": {"kk": "Квота күйі", "ru": "Статус квоты", "en": "Quota status"},
    "grid_status": {
        "kk": "Желіге қосылу (5-тармақ)",
        "ru": "Подключение к сети (п. 5)",
        "en": "Grid connection (item 5)",
    },
    "pool_status": {
        "kk": "Пул арқылы майнинг (7-тармақ)",
        "ru": "Майнинг через пул (п. 7)",
        "en": "Mining through a pool (item 7)",
    },
    "uplink": {"kk": "Жіберу кезегі", "ru": "Очередь отправки", "en": "Uplink queue"},
    "devices_down": {
        "kk": "Жауап бермеген құрылғылар",
        "ru": "Не ответившие устройства",
        "en": "Devices not answering",
    },
    "offenders": {
        "kk": "майнер аккредиттелмеген пулда",
        "ru": "майнеров на неаккредитованном пуле",
        "en": "miners on a pool that is not accredited",
    },
    "balance": {
        "kk": "Энергия балансы (тіркелмеген жүктеме)",
        "ru": "Баланс энергии (неучтённая нагрузка)",
        "en": "Energy balance (unregistered load)",
    },
    "alarm": {"kk": "ДАБЫЛ", "ru": "ТРЕВОГА", "en": "ALARM"},
    "check": {"kk": "тексеру керек", "ru": "проверить данные", "en": "check data"},
    "telemetry": {"kk": "телеметрия", "ru": "телеметрия", "en": "telemetry"},
    "register": {"kk": "тізілім", "ru": "реестр", "en": "register"},
    "no_data": {"kk": "деректер жоқ", "ru": "нет данных", "en": "no data"},
    "stopping": {"kk": "Тоқтатылуда…", "ru": "Остановка…", "en": "Stopping…"},
    "ok": {"kk": "ҚАЛЫПТЫ", "ru": "НОРМА", "en": "OK"},
    "warn": {"kk": "ЕСКЕРТУ", "ru": "ВНИМАНИЕ", "en": "WARN"},
    "over": {"kk": "АСЫП КЕТТІ", "ru": "ПРЕВЫШЕНИЕ", "en": "OVER"},
    "no_allocation": {"kk": "КВОТА ЖОҚ", "ru": "НЕТ КВОТЫ", "en": "NO ALLOCATION"},
    "pass": {"kk": "сәйкес", "ru": "соответствует", "en": "pass"},
    "fail": {"kk": "сәйкес емес", "ru": "не соответствует", "en": "fail"},
    "exempt": {"kk": "босатылған", "ru": "освобождён", "en": "exempt"},
    "unknown": {"kk": "белгісіз", "ru": "неизвестно", "en": "unknown"},
    # --- the local dashboard (agent.dashboard) ---
    "miners_power": {"kk": "Майнерлер қуаты", "ru": "Мощность майнеров", "en": "Miners' power"},
    "sleeping": {"kk": "ұйқы режимінде", "ru": "в спящем режиме", "en": "sleeping"},
    "site": {"kk": "Алаң", "ru": "Площадка", "en": "Site"},
    "updated": {"kk": "Жаңартылған уақыты", "ru": "Обновлено", "en": "Updated"},
    "kind": {"kk": "Түрі", "ru": "Тип", "en": "Kind"},
    "device": {"kk": "Құрылғы", "ru": "Устройство", "en": "Device"},
    "cause": {"kk": "Себебі", "ru": "Причина", "en": "Cause"},
    "polled_at": {"kk": "Сұрау уақыты", "ru": "Время опроса", "en": "Polled at"},
    "pool": {"kk": "Пул", "ru": "Пул", "en": "Pool"},
    "all_answer": {
        "kk": "Барлық құрылғылар жауап береді",
        "ru": "Все устройства отвечают",
        "en": "Every device answers",
    },
    "more": {"kk": "тағы", "ru": "ещё", "en": "more"},
    "jobs": {"kk": "Агент тапсырмалары", "ru": "Задачи агента", "en": "Agent jobs"},
    "starting": {"kk": "іске қосылуда", "ru": "запуск", "en": "starting"},
    "stale": {"kk": "кешігуде", "ru": "не выполняются вовремя", "en": "stale"},
    "read_only": {
        "kk": "Тек оқу үшін: басқару әрекеттері жоқ. Бет әр 10 секунд сайын жаңарады.",
        "ru": "Только просмотр: управляющих действий нет. Страница обновляется каждые 10 с.",
        "en": "Read-only: no control actions. The page refreshes every 10 s.",
    },
    # --- item 7's fix (agent.pool_fix): {device} {firmware} {pool} {pools} {detail} {retry} ---
    "pools_fix_reason": {
        "kk": "7-тармақ: {pool} пулы аккредиттелмеген",
        "ru": "п. 7: пул {pool} не аккредитован",
        "en": "item 7: pool {pool} is not accredited",
    },
    "pools_fix_plan": {
        "kk": "7-тармақты түзету, сынақ режимі ([quota] enforce = false): {device} майнері"
        " аккредиттелмеген {pool} пулында; оған мына пулдар жазылар еді: {pools}",
        "ru": "Исправление п. 7, пробный режим ([quota] enforce = false): майнер {device}"
        " работает на неаккредитованном пуле {pool}; ему были бы записаны пулы: {pools}",
        "en": "item 7 fix, dry run ([quota] enforce = false): miner {device} mines on {pool},"
        " which is not accredited; it would get the pools {pools}",
    },
    "pools_fix_done": {
        "kk": "7-тармақ түзетілді: {device} майнері {pool} пулынан аккредиттелген пулдарға"
        " ауыстырылды ({pools}), қайта оқу арқылы расталды",
        "ru": "П. 7 исправлен: майнер {device} переведён с пула {pool} на аккредитованные"
        " пулы ({pools}), подтверждено повторным чтением",
        "en": "item 7 fixed: miner {device} moved from {pool} to the accredited pools"
        " ({pools}), confirmed by reading back",
    },
    "pools_fix_not_done": {
        "kk": "7-тармақ түзетілмеді: {device} майнері ({firmware}) аккредиттелген пулдарды"
        " қабылдамады ({outcome}: {detail}); {retry}",
        "ru": "П. 7 не исправлен: майнер {device} ({firmware}) не принял аккредитованные"
        " пулы ({outcome}: {detail}); {retry}",
        "en": "item 7 not fixed: miner {device} ({firmware}) did not take the accredited pools"
        " ({outcome}: {detail}); {retry}",
    },
    "pools_fix_no_path": {
        "kk": "7-тармақ түзетілмеді: {device} майнерінің ({firmware}) kuat білетін пул жазу"
        " жолы жоқ; оны {pool} пулынан аккредиттелген пулға қолмен ауыстырыңыз; {retry}",
        "ru": "П. 7 не исправлен: у майнера {device} ({firmware}) нет известного kuat способа"
        " записать пулы; переведите его с пула {pool} на аккредитованный вручную; {retry}",
        "en": "item 7 not fixed: miner {device} ({firmware}) has no pool write path kuat"
        " knows; move it off {pool} to an accredited pool by hand; {retry}",
    },
    "pools_fix_retry": {
        "kk": "келесі әрекет {at} кейін",
        "ru": "следующая попытка не раньше {at}",
        "en": "not tried again before {at}",
    },
    "pools_fix_never": {
        "kk": "микробағдарлама өзгермейінше қайталанбайды",
        "ru": "повторов не будет, пока не сменится прошивка",
        "en": "not tried again unless its firmware changes",
    },
    # --- miner faults (agent.fault_alerts): {device} {model} {code} {text} {severity} ---------
    "fault_raised": {
        "kk": "{device} майнері ({model}) ақау туралы хабарлайды, {severity}: {code} — {text}",
        "ru": "Майнер {device} ({model}) сообщает о неисправности, {severity}: {code} — {text}",
        "en": "miner {device} ({model}) reports a fault, {severity}: {code} — {text}",
    },
    "fault_cleared": {
        "kk": "{device} майнерінің ({model}) ақауы жойылды: {code} — {text}",
        "ru": "Неисправность майнера {device} ({model}) устранена: {code} — {text}",
        "en": "miner {device} ({model}) fault cleared: {code} — {text}",
    },
    "severity_critical": {"kk": "сыни", "ru": "критическая", "en": "critical"},
    "severity_warning": {"kk": "ескерту", "ru": "предупреждение", "en": "warning"},
    "severity_info": {"kk": "ақпарат", "ru": "информация", "en": "info"},
}


def t(key: str, lang: Lang) -> str:
    """Label ``key`` in ``lang``; an unknown key shows as itself rather than crash a screen."""
    entry = CATALOG.get(key)
    return entry[lang] if entry else key
