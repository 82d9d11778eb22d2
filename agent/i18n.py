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
}


def t(key: str, lang: Lang) -> str:
    """Label ``key`` in ``lang``; an unknown key shows as itself rather than crash a screen."""
    entry = CATALOG.get(key)
    return entry[lang] if entry else key
