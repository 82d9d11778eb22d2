"""What ``kuat demo`` says to the person watching it, in Kazakh, Russian and English.

Kept as the agent's own catalogue is (``kuat.agent.i18n``): a key, its three texts, named
``{placeholders}`` filled by :func:`say`. The texts are the demo's alone — the status rows
themselves are the agent's labels and quota reasons, shared with ``kuat run``.
"""

from __future__ import annotations

from kuat.agent.i18n import Lang

DEMO_TEXT: dict[str, dict[Lang, str]] = {
    "starting": {
        "kk": "kuat demo: {miners} симуляцияланған майнер, 4 PDU және 2 есептегіш іске қосылуда…",
        "ru": "kuat demo: запуск {miners} симулированных майнеров, 4 PDU и 2 счётчиков…",
        "en": "kuat demo: starting {miners} simulated miners, 4 PDUs and 2 meters…",
    },
    "cannot_start": {
        "kk": "Симуляцияланған ферма іске қосылмады: {error}",
        "ru": "Не удалось запустить симулированную ферму: {error}",
        "en": "Could not start the simulated farm: {error}",
    },
    "state_dir": {
        "kk": "Күй каталогы: {path} (спул мен шығыс кезегі; InfluxDB не MQTT керек емес)",
        "ru": "Каталог состояния: {path} (спул и исходящая очередь; InfluxDB и MQTT не нужны)",
        "en": "State directory: {path} (spool and outbox; no InfluxDB or MQTT needed)",
    },
    "devices": {
        "kk": "Майнерлер {first} … {last}; PDU {pdus} (udp); есептегіш {meter} (Modbus TCP); "
        "коммерциялық есептегіш {dlms} (DLMS). Тоқтату: Ctrl-C.",
        "ru": "Майнеры {first} … {last}; PDU {pdus} (udp); счётчик {meter} (Modbus TCP); "
        "коммерческий счётчик {dlms} (DLMS). Остановка: Ctrl-C.",
        "en": "Miners {first} … {last}; PDUs {pdus} (udp); meter {meter} (Modbus TCP); "
        "commercial meter {dlms} (DLMS). Ctrl-C stops.",
    },
    "story": {
        "kk": "Осы сағаттың квотасы ферманың толық жүктемесінен тар: сағаттың қалған бөлігіне "
        "толық қуаттың {share} %-ы ғана рұқсат. Жоспарлаушы шешеді — {mode}.",
        "ru": "Квота этого часа уже, чем полная нагрузка фермы: на остаток часа разрешено лишь "
        "{share} % полной мощности. Решает планировщик — {mode}.",
        "en": "This hour's allocation is tighter than the farm's full draw: the rest of the hour "
        "may draw only {share}% of it. The planner decides — {mode}.",
    },
    "mode_dry_run": {
        "kk": "сынақ режимі: жоспар көрсетіледі, ештеңе ауыстырылмайды (--enforce орындайды)",
        "ru": "пробный режим: план показан, ничего не переключается (--enforce выполняет)",
        "en": "dry run: the plan is shown, nothing is switched (--enforce carries it out)",
    },
    "mode_enforce": {
        "kk": "орындау режимі: майнерлерге командалар жіберіледі, есептегіш соларға ілеседі",
        "ru": "режим исполнения: команды уходят майнерам, счётчик следует за ними",
        "en": "enforcing: commands go to the miners and the meter follows them",
    },
    "hidden_on": {
        "kk": "Жасырын жүктеме: есептегішке {kw} кВт тіркелмеген жүктеме қосылды "
        "(тіркелмеген жүктеме дабылы шығуы тиіс).",
        "ru": "Скрытая нагрузка: к счётчику добавлено {kw} кВт неучтённой нагрузки "
        "(должна появиться тревога о неучтённой нагрузке).",
        "en": "Hidden load: {kw} kW of unregistered load added to the meter "
        "(the unregistered-load alarm should show).",
    },
    "log_file": {"kk": "Журнал: {path}", "ru": "Журнал: {path}", "en": "Log: {path}"},
    "dashboard": {
        "kk": "Басқару тақтасы: {url}  (сондай-ақ /api/status, /healthz, /metrics)",
        "ru": "Панель: {url}  (также /api/status, /healthz, /metrics)",
        "en": "Dashboard: {url}  (also /api/status, /healthz, /metrics)",
    },
    "dashboard_off": {
        "kk": "Басқару тақтасы: өшірулі",
        "ru": "Панель: отключена",
        "en": "Dashboard: off",
    },
    "dashboard_failed": {
        "kk": "Басқару тақтасы іске қосылмады ({listen} бос емес пе? журналды қараңыз; "
        "--listen басқа адрес береді)",
        "ru": "Панель не запущена ({listen} занят? см. журнал; --listen задаёт другой адрес)",
        "en": "Dashboard not started ({listen} in use? see the log; --listen picks another)",
    },
    "settlement": {
        "kk": "Коммерциялық есеп: {text}",
        "ru": "Коммерческий учёт: {text}",
        "en": "Settlement: {text}",
    },
    "astana": {"kk": "Астана уақыты", "ru": "время Астаны", "en": "Astana time"},
    # --- the story's rows under the agent's status rows ---
    "row_mode": {"kk": "Қысқарту режимі", "ru": "Режим ограничения", "en": "Curtailment mode"},
    "dry_run": {
        "kk": "сынақ (ештеңе ауыстырылмайды)",
        "ru": "пробный (ничего не переключается)",
        "en": "dry run (nothing is switched)",
    },
    "enforce": {"kk": "орындау", "ru": "исполнение", "en": "enforcing"},
    "row_plan": {"kk": "Жоспарлаушы", "ru": "Планировщик", "en": "Planner"},
    "plan_none": {
        "kk": "әзірге шешім жоқ",
        "ru": "пока решений нет",
        "en": "no decision yet",
    },
    "plan_idle": {
        "kk": "әрекет қажет емес",
        "ru": "действий не требуется",
        "en": "nothing to do",
    },
    "plan_would": {
        "kk": "{time}: {actions} ({kw} кВт) жоспарланды, бірақ орындалмайды — {reason}",
        "ru": "{time}: запланировано {actions} ({kw} кВт), не выполняется — {reason}",
        "en": "{time}: would {actions} ({kw} kW) — {reason}",
    },
    "plan_did": {
        "kk": "{time}: {actions} ({kw} кВт) — {reason}",
        "ru": "{time}: {actions} ({kw} кВт) — {reason}",
        "en": "{time}: {actions} ({kw} kW) — {reason}",
    },
    "act_sleep": {
        "kk": "{n} майнерді ұйықтату",
        "ru": "усыпить майнеров: {n}",
        "en": "sleep {n} miners",
    },
    "act_restore": {
        "kk": "{n} майнерді ояту",
        "ru": "разбудить майнеров: {n}",
        "en": "wake {n} miners",
    },
    "act_limit_power": {
        "kk": "{n} майнердің қуатын шектеу",
        "ru": "ограничить мощность: {n}",
        "en": "limit {n} miners' power",
    },
    "act_restore_power": {
        "kk": "{n} майнердің қуатын қайтару",
        "ru": "вернуть мощность: {n}",
        "en": "give {n} miners their power back",
    },
    "act_outlet_off": {
        "kk": "{n} розетканы өшіру",
        "ru": "отключить розеток: {n}",
        "en": "switch {n} outlets off",
    },
    "act_outlet_on": {
        "kk": "{n} розетканы қосу",
        "ru": "включить розеток: {n}",
        "en": "switch {n} outlets on",
    },
    "row_hour": {
        "kk": "Сағат {start}–{end} (Астана)",
        "ru": "Час {start}–{end} (Астана)",
        "en": "Hour {start}–{end} (Astana)",
    },
    "hour_inside": {
        "kk": "{forecast} кВт·сағ-пен жабылады, квота {allocation} кВт·сағ — квота ішінде",
        "ru": "закроется на {forecast} кВт·ч при квоте {allocation} кВт·ч — в пределах",
        "en": "closes at {forecast} kWh of {allocation} kWh — inside its allocation",
    },
    "hour_over": {
        "kk": "{forecast} кВт·сағ-пен жабылады, квота {allocation} кВт·сағ — "
        "{excess} кВт·сағ асып кетеді",
        "ru": "закроется на {forecast} кВт·ч при квоте {allocation} кВт·ч — "
        "превышение {excess} кВт·ч",
        "en": "closes at {forecast} kWh of {allocation} kWh — {excess} kWh over",
    },
    "hour_closed_inside": {
        "kk": "Сағат {start}–{end} (Астана) жабылды: {used} кВт·сағ, квота {allocation} кВт·сағ "
        "— квота ішінде",
        "ru": "Час {start}–{end} (Астана) закрыт: {used} кВт·ч при квоте {allocation} кВт·ч — "
        "в пределах",
        "en": "Hour {start}–{end} (Astana) closed: {used} kWh of {allocation} kWh — inside its "
        "allocation",
    },
    "hour_closed_over": {
        "kk": "Сағат {start}–{end} (Астана) жабылды: {used} кВт·сағ, квота {allocation} кВт·сағ "
        "— {excess} кВт·сағ асып кетті",
        "ru": "Час {start}–{end} (Астана) закрыт: {used} кВт·ч при квоте {allocation} кВт·ч — "
        "превышение {excess} кВт·ч",
        "en": "Hour {start}–{end} (Astana) closed: {used} kWh of {allocation} kWh — {excess} kWh "
        "over",
    },
    "row_power": {"kk": "Қуат теңгерімі", "ru": "Баланс мощности", "en": "Power adds up"},
    "power_sum": {
        "kk": "есептегіш {meter} кВт = майнерлер {miners} кВт + PDU {pdus} кВт "
        "+ үстеме {overhead} кВт + түсіндірілмеген {rest} кВт",
        "ru": "счётчик {meter} кВт = майнеры {miners} кВт + PDU {pdus} кВт "
        "+ накладные {overhead} кВт + необъяснённое {rest} кВт",
        "en": "meter {meter} kW = miners {miners} kW + PDUs {pdus} kW "
        "+ overhead {overhead} kW + unexplained {rest} kW",
    },
    # --- command-line input ---
    "bad_lang": {
        "kk": "--lang: kk, ru немесе en болуы керек, {value!r} емес",
        "ru": "--lang: должно быть kk, ru или en, а не {value!r}",
        "en": "--lang must be kk, ru or en, not {value!r}",
    },
    "bad_base": {
        "kk": "--base: {value!r} 127.0.0.0/8 ішіндегі IPv4 адрес емес",
        "ru": "--base: {value!r} — не IPv4-адрес из 127.0.0.0/8",
        "en": "--base: {value!r} is not an IPv4 address in 127.0.0.0/8",
    },
    "base_full": {
        "kk": "--base: {value!r} адресінен бастап {miners} майнер PDU мен есептегіштер тұрған "
        "{devices} адресіне жетеді; төменірек адрес не азырақ майнер таңдаңыз",
        "ru": "--base: {miners} майнеров от {value!r} дойдут до {devices}, где PDU и счётчики; "
        "выберите адрес ниже или меньше майнеров",
        "en": "--base: {miners} miners from {value!r} would reach {devices}, where the PDUs and "
        "meters are; pick a lower base or fewer miners",
    },
    "bad_listen": {
        "kk": "--listen: {error}",
        "ru": "--listen: {error}",
        "en": "--listen: {error}",
    },
}


def num(value: float, lang: Lang) -> str:
    """A figure as a reader of ``lang`` writes it, to 0.1: "1,234.5" in English, "1 234,5" in
    Kazakh and Russian (a comma there is the decimal sign: "2,072" would read as 2.072)."""
    text = f"{value:,.1f}"
    if lang == "en":
        return text
    return text.replace(",", "\u202f").replace(".", ",")


def say(key: str, lang: Lang, **params: object) -> str:
    """The demo's text ``key`` in ``lang`` with ``params`` filled in (floats by :func:`num`)."""
    shown = {k: num(v, lang) if isinstance(v, float) else v for k, v in params.items()}
    return DEMO_TEXT[key][lang].format(**shown)
