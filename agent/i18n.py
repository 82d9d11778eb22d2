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
    # --- the dashboard's miners table, hour, curtailment and power explained; its guard ---
    "host_refused": {
        "kk": "Бұл хост атауына жауап берілмейді. Басқа атауды [dashboard] hosts кілтіне қосыңыз.",
        "ru": "На это имя хоста ответа нет. Другое имя добавьте в [dashboard] hosts.",
        "en": "This host name is not answered. Add other names to [dashboard] hosts.",
    },
    "token_needed": {
        "kk": "Бақылау тақтасына токен керек: бір рет /?token=… ашыңыз немесе "
        "«Authorization: Bearer …» жіберіңіз.",
        "ru": "Для панели нужен токен: откройте один раз /?token=… или передайте "
        "«Authorization: Bearer …».",
        "en": "The dashboard needs its token: open /?token=… once, or send "
        '"Authorization: Bearer …".',
    },
    "token_wrong": {"kk": "Токен дұрыс емес.", "ru": "Неверный токен.", "en": "Wrong token."},
    "miners": {"kk": "Майнерлер", "ru": "Майнеры", "en": "Miners"},
    "miner": {"kk": "Майнер", "ru": "Майнер", "en": "Miner"},
    "address": {"kk": "Мекенжай", "ru": "Адрес", "en": "Address"},
    "state": {"kk": "Күйі", "ru": "Состояние", "en": "State"},
    "model": {"kk": "Моделі", "ru": "Модель", "en": "Model"},
    "firmware": {"kk": "Микробағдарлама", "ru": "Прошивка", "en": "Firmware"},
    "col_hashrate": {"kk": "Хешрейт", "ru": "Хешрейт", "en": "Hashrate"},
    "power": {"kk": "Қуат", "ru": "Мощность", "en": "Power"},
    "efficiency": {"kk": "Тиімділік", "ru": "Эффективность", "en": "Efficiency"},
    "temp": {"kk": "Температура", "ru": "Температура", "en": "Temperature"},
    "faults": {"kk": "Қателер", "ru": "Ошибки", "en": "Errors"},
    "curtailment": {"kk": "Шектеу", "ru": "Ограничение", "en": "Curtailment"},
    "st_mining": {"kk": "майнинг", "ru": "майнинг", "en": "mining"},
    "st_sleeping": {"kk": "ұйқыда", "ru": "спит", "en": "sleeping"},
    "st_error": {"kk": "ақаулы", "ru": "неисправен", "en": "error"},
    "st_down": {"kk": "жауап жоқ", "ru": "не отвечает", "en": "not answering"},
    "src_outlet": {"kk": "PDU розеткасы", "ru": "розетка PDU", "en": "PDU outlet"},
    "src_miner": {"kk": "майнер хабарлаған", "ru": "по данным майнера", "en": "miner's report"},
    "src_rated": {"kk": "номиналды", "ru": "номинальная", "en": "rated"},
    "src_none": {"kk": "белгісіз", "ru": "неизвестно", "en": "unknown"},
    "cs_running": {"kk": "шектеусіз", "ru": "без ограничений", "en": "not curtailed"},
    "cs_asleep": {"kk": "ұйқыда", "ru": "спит", "en": "asleep"},
    "cs_limited": {"kk": "қуаты шектелген", "ru": "мощность ограничена", "en": "power-limited"},
    "cs_outlet_off": {
        "kk": "розеткасы өшірілген",
        "ru": "розетка отключена",
        "en": "outlet switched off",
    },
    "since": {"kk": "бастап", "ru": "с", "en": "since"},
    "planned": {"kk": "жоспарда", "ru": "в плане", "en": "planned"},
    "search": {"kk": "Іздеу", "ru": "Поиск", "en": "Search"},
    "any": {"kk": "кез келген", "ru": "любое", "en": "any"},
    "apply": {"kk": "Қолдану", "ru": "Применить", "en": "Apply"},
    "reset": {"kk": "Тазалау", "ru": "Сбросить", "en": "Reset"},
    "only_faults": {
        "kk": "тек қателері барлар",
        "ru": "только с ошибками",
        "en": "only with errors",
    },
    "page": {"kk": "Бет", "ru": "Страница", "en": "Page"},
    "prev": {"kk": "Алдыңғы", "ru": "Назад", "en": "Previous"},
    "next": {"kk": "Келесі", "ru": "Далее", "en": "Next"},
    "matching": {"kk": "сәйкес майнер", "ru": "майнеров по фильтру", "en": "miners match"},
    "of_total": {"kk": "барлығы", "ru": "всего", "en": "of"},
    "no_miners": {
        "kk": "Сүзгіге сәйкес майнер жоқ",
        "ru": "Нет майнеров по фильтру",
        "en": "No miner matches",
    },
    "bad_query": {
        "kk": "Сүзгі түсініксіз, толық тізім көрсетілді",
        "ru": "Фильтр не распознан, показан полный список",
        "en": "Filter not understood, the full list is shown",
    },
    "hour": {"kk": "Сағат", "ru": "Час", "en": "The hour"},
    "used": {"kk": "Жұмсалды", "ru": "Израсходовано", "en": "Used"},
    "allocation": {"kk": "Квота", "ru": "Квота", "en": "Allocation"},
    "remaining": {"kk": "Қалды", "ru": "Осталось", "en": "Remaining"},
    "allowed_power": {
        "kk": "Сағат соңына дейін рұқсат етілген қуат",
        "ru": "Разрешённая мощность до конца часа",
        "en": "Power allowed for the rest of the hour",
    },
    "minutes_left": {"kk": "мин қалды", "ru": "мин осталось", "en": "min left"},
    "hour_ending": {"kk": "сағат", "ru": "час", "en": "hour ending"},
    "chart_hour": {
        "kk": "Осы сағат: жұмсалған энергия, болжам және квота",
        "ru": "Этот час: израсходовано, прогноз и квота",
        "en": "This hour: energy used, forecast and allocation",
    },
    "chart_day": {
        "kk": "Соңғы 24 сағат: есептегіш бойынша сағаттық энергия (кВт·сағ = орташа кВт) "
        "және квота",
        "ru": "Последние 24 часа: энергия по счётчику за час (кВт·ч = средние кВт) и квота",
        "en": "Last 24 hours: metered energy per hour (kWh = mean kW) against the allocation",
    },
    "chart_power": {
        "kk": "Қуат құрамы: есептегіш, PDU сомасы, майнерлер сомасы",
        "ru": "Состав мощности: счётчик, сумма PDU, сумма майнеров",
        "en": "Power explained: meter, Σ PDUs, Σ miners",
    },
    "power_explained": {"kk": "Қуат құрамы", "ru": "Состав мощности", "en": "Power explained"},
    "meter": {"kk": "Есептегіш", "ru": "Счётчик", "en": "Meter"},
    "sum_pdus": {"kk": "Σ PDU", "ru": "Σ PDU", "en": "Σ PDUs"},
    "sum_miners": {"kk": "Σ майнерлер", "ru": "Σ майнеров", "en": "Σ miners"},
    "devices": {"kk": "Құрылғылар", "ru": "Устройства", "en": "Devices"},
    "overhead": {
        "kk": "Қосымша жүктеме (салқындату, шығындар)",
        "ru": "Собственные нужды (охлаждение, потери)",
        "en": "Overhead (cooling, losses)",
    },
    "remainder": {
        "kk": "Түсіндірілмеген қалдық",
        "ru": "Необъяснённый остаток",
        "en": "Unexplained remainder",
    },
    "not_compared": {
        "kk": "салыстырылмайды: PDU бүкіл алаңды қамтымайды ([balance] pdus_cover_site)",
        "ru": "не сравнивается: PDU не охватывают всю площадку ([balance] pdus_cover_site)",
        "en": "not compared: the PDUs do not cover the whole site ([balance] pdus_cover_site)",
    },
    "unreported": {
        "kk": "майнер қуатын хабарламайды",
        "ru": "майнеров не сообщают мощность",
        "en": "mining miners report no power",
    },
    "mode": {"kk": "Режим", "ru": "Режим", "en": "Mode"},
    "mode_enforce": {
        "kk": "орындау: kuat жоспарды орындайды",
        "ru": "исполнение: kuat выполняет план",
        "en": "enforce: kuat carries the plan out",
    },
    "mode_dry_run": {
        "kk": "сынақ: жоспар көрсетіледі, ештеңе орындалмайды ([quota] enforce = false)",
        "ru": "пробный режим: план показан, ничего не выполняется ([quota] enforce = false)",
        "en": "dry run: the plan is shown, nothing is done ([quota] enforce = false)",
    },
    "decision": {"kk": "Шешім", "ru": "Решение", "en": "Decision"},
    "load": {"kk": "Жүктеме", "ru": "Нагрузка", "en": "Load"},
    "planned_load": {
        "kk": "Жоспардан кейінгі жүктеме",
        "ru": "Нагрузка после плана",
        "en": "Load after the plan",
    },
    "allowed": {"kk": "Рұқсат етілген", "ru": "Разрешено", "en": "Allowed"},
    "action": {"kk": "Әрекет", "ru": "Действие", "en": "Action"},
    "no_plan": {
        "kk": "Жоспар әлі жоқ",
        "ru": "Плана пока нет",
        "en": "No plan yet",
    },
    "no_actions": {
        "kk": "Әрекет қажет емес",
        "ru": "Действий не требуется",
        "en": "No action needed",
    },
    "held": {
        "kk": "Таймерлер ұстап тұр",
        "ru": "Удержано таймерами",
        "en": "Held by the timers",
    },
    "curtailed_now": {
        "kk": "kuat қазір шектеп отыр",
        "ru": "Сейчас ограничено kuat",
        "en": "Curtailed by kuat now",
    },
    "nothing_curtailed": {
        "kk": "kuat ешбір майнерді шектемейді",
        "ru": "kuat не ограничивает ни одного майнера",
        "en": "kuat curtails no miner",
    },
    "act_sleep": {"kk": "ұйықтату", "ru": "усыпить", "en": "sleep"},
    "act_restore": {"kk": "ояту", "ru": "разбудить", "en": "wake"},
    "act_limit_power": {"kk": "қуатты шектеу", "ru": "ограничить мощность", "en": "limit power"},
    "act_restore_power": {
        "kk": "қуатты қайтару",
        "ru": "вернуть мощность",
        "en": "restore power",
    },
    "act_outlet_off": {"kk": "розетканы өшіру", "ru": "отключить розетку", "en": "outlet off"},
    "act_outlet_on": {"kk": "розетканы қосу", "ru": "включить розетку", "en": "outlet on"},
}


def t(key: str, lang: Lang) -> str:
    """Label ``key`` in ``lang``; an unknown key shows as itself rather than crash a screen."""
    entry = CATALOG.get(key)
    return entry[lang] if entry else key
