"""What every reason code says, in Kazakh, Russian and English.

Terms follow the law's own wording (/work/shared/regulation.md): «электр энергиясына квота» /
«квота на электрическую энергию», «техникалық шарттар» / «технические условия», «рұқсат етілген
қуат» / «разрешённая мощность», «цифрлық майнингтік пул» / «цифровой майнинговый пул», «цифрлық
майнинг деректерін өңдеу орталығы» / «центр обработки данных цифрового майнинга».

Templates use ``str.format`` fields named after the reason's parameters. Numbers are shown with
at most one decimal, with a decimal comma in kk and ru; lists are joined with commas; a missing
parameter shows as its ``{name}`` rather than raising: an operator screen must never crash
on text.
"""

from __future__ import annotations

from typing import Any, Literal

from kuat.quota.reasons import Code, Reason

Lang = Literal["kk", "ru", "en"]
LANGS: tuple[Lang, ...] = ("kk", "ru", "en")

_SCHED_KEY_EN = "{site} {date} ({source})"

CATALOG: dict[Code, dict[Lang, str]] = {
    # --- schedules ----------------------------------------------------------------------
    Code.SCHEDULE_NOT_JSON: {
        "kk": "Кесте JSON емес: {error}",
        "ru": "График не является JSON: {error}",
        "en": "Schedule is not JSON: {error}",
    },
    Code.SCHEDULE_BAD_SHAPE: {
        "kk": "Кесте құрылымы дұрыс емес: күтілгені — {expected}",
        "ru": "Неверная структура графика: ожидается {expected}",
        "en": "Schedule has the wrong shape: expected {expected}",
    },
    Code.SCHEDULE_EMPTY: {
        "kk": "Кесте бос",
        "ru": "График пуст",
        "en": "Schedule is empty",
    },
    Code.SCHEDULE_MISSING_COLUMN: {
        "kk": "Кестеде «{column}» бағаны жоқ (бар бағандар: {found})",
        "ru": "В графике нет столбца «{column}» (есть: {found})",
        "en": "Schedule has no «{column}» column (found: {found})",
    },
    Code.SCHEDULE_BAD_ROW: {
        "kk": "{line}-жолда {got} мән бар, {expected} болуы керек",
        "ru": "В строке {line} значений {got}, должно быть {expected}",
        "en": "Line {line} has {got} values, expected {expected}",
    },
    Code.SCHEDULE_BAD_CSV: {
        "kk": "{line}-жолдағы CSV оқылмайды: {error}",
        "ru": "CSV не читается в строке {line}: {error}",
        "en": "CSV unreadable at line {line}: {error}",
    },
    Code.SCHEDULE_MISSING_FIELD: {
        "kk": "Кестеде «{field}» өрісі көрсетілмеген",
        "ru": "В графике не указано поле «{field}»",
        "en": "Schedule does not give «{field}»",
    },
    Code.SCHEDULE_INCONSISTENT_FIELD: {
        "kk": "«{field}» өрісінің мәндері әртүрлі: {values}",
        "ru": "Поле «{field}» имеет разные значения: {values}",
        "en": "«{field}» differs within the schedule: {values}",
    },
    Code.SCHEDULE_BAD_DATE: {
        "kk": "Күн дұрыс емес: «{value}» (ЖЖЖЖ-АА-КК пішімі керек)",
        "ru": "Неверная дата: «{value}» (нужен формат ГГГГ-ММ-ДД)",
        "en": "Bad date «{value}» (use YYYY-MM-DD)",
    },
    Code.SCHEDULE_BAD_SOURCE: {
        "kk": "Энергия көзі белгісіз: «{value}» (рұқсат етілгендері: {allowed})",
        "ru": "Неизвестный источник энергии «{value}» (допустимо: {allowed})",
        "en": "Unknown energy source «{value}» (allowed: {allowed})",
    },
    Code.SCHEDULE_BAD_VERSION: {
        "kk": "Нұсқа нөмірі дұрыс емес: «{value}» (теріс емес бүтін сан керек)",
        "ru": "Неверный номер версии «{value}» (нужно целое неотрицательное число)",
        "en": "Bad version «{value}» (must be a whole number, 0 or more)",
    },
    Code.SCHEDULE_HOURS_COUNT: {
        "kk": "Кестеде {got} сағат бар, {expected} болуы керек (Қазақстанда жазғы уақыт жоқ)",
        "ru": "В графике {got} ч., должно быть ровно {expected} (летнего времени в Казахстане нет)",
        "en": "Schedule has {got} hours, expected exactly {expected} (Kazakhstan keeps no DST)",
    },
    Code.SCHEDULE_HOUR_MISSING: {
        "kk": "Мына сағаттар жоқ: {hours}",
        "ru": "Нет часов: {hours}",
        "en": "Hours missing: {hours}",
    },
    Code.SCHEDULE_HOUR_OUT_OF_RANGE: {
        "kk": "Сағат нөмірі дұрыс емес: «{value}» ({at}); 1–24 болуы керек",
        "ru": "Неверный номер часа «{value}» ({at}); допустимо 1–24",
        "en": "Bad hour «{value}» ({at}); hours are 1-24",
    },
    Code.SCHEDULE_HOUR_DUPLICATE: {
        "kk": "{hour}-сағат бірнеше рет берілген",
        "ru": "Час {hour} указан несколько раз",
        "en": "Hour {hour} is given more than once",
    },
    Code.SCHEDULE_VALUE_NOT_NUMERIC: {
        "kk": "{hour}-сағаттың мәні сан емес: «{value}» ({at})",
        "ru": "Значение часа {hour} не число: «{value}» ({at})",
        "en": "Hour {hour} value is not a number: «{value}» ({at})",
    },
    Code.SCHEDULE_VALUE_NEGATIVE: {
        "kk": "{hour}-сағаттың мәні теріс: {mwh} МВт·сағ",
        "ru": "Отрицательное значение часа {hour}: {mwh} МВт·ч",
        "en": "Hour {hour} is negative: {mwh} MWh",
    },
    Code.SCHEDULE_VALUE_TOO_LARGE: {
        "kk": "{hour}-сағаттың мәні шындыққа сай емес: {mwh} МВт·сағ, шегі {cap_mwh} МВт·сағ"
        " (кВт·сағ МВт·сағ орнына жазылған болуы мүмкін)",
        "ru": "Неправдоподобное значение часа {hour}: {mwh} МВт·ч при пределе {cap_mwh} МВт·ч"
        " (возможно, указаны кВт·ч вместо МВт·ч)",
        "en": "Hour {hour} is implausibly large: {mwh} MWh, cap {cap_mwh} MWh (kWh given as MWh?)",
    },
    Code.SCHEDULE_ADDED: {
        "kk": "Квота кестесі қабылданды: {site} {date} ({source}), {version}-нұсқа",
        "ru": "График квоты принят: {site} {date} ({source}), версия {version}",
        "en": "Quota schedule accepted: " + _SCHED_KEY_EN + ", version {version}",
    },
    Code.SCHEDULE_REPLACED: {
        "kk": "Квота кестесі жаңартылды: {site} {date} ({source}), {previous}-нұсқа орнына"
        " {version}-нұсқа",
        "ru": "График квоты обновлён: {site} {date} ({source}), версия {previous} → {version}",
        "en": "Quota schedule replaced: " + _SCHED_KEY_EN + ", version {previous} → {version}",
    },
    Code.SCHEDULE_UNCHANGED: {
        "kk": "Квота кестесі өзгерген жоқ: {site} {date} ({source}), {version}-нұсқа",
        "ru": "График квоты не изменился: {site} {date} ({source}), версия {version}",
        "en": "Quota schedule unchanged: " + _SCHED_KEY_EN + ", version {version}",
    },
    Code.SCHEDULE_OLDER_VERSION: {
        "kk": "Ескі нұсқа қабылданбады: {site} {date} ({source}), {version}-нұсқа;"
        " {held}-нұсқа қолданыста қалады",
        "ru": "Старая версия не принята: {site} {date} ({source}), версия {version};"
        " действует версия {held}",
        "en": "Older version ignored: " + _SCHED_KEY_EN + ", version {version};"
        " version {held} stays in force",
    },
    Code.SCHEDULE_VERSION_CONFLICT: {
        "kk": "{site} {date} ({source}) кестесінің {version}-нұсқасы басқа мәндермен келді;"
        " бұрынғысы қолданыста қалады — нұсқа нөмірін арттырыңыз",
        "ru": "Версия {version} графика {site} {date} ({source}) пришла с другими значениями;"
        " действует прежняя — увеличьте номер версии",
        "en": "Version {version} of " + _SCHED_KEY_EN + " arrived with different values;"
        " the held one stays — bump the version",
    },
    Code.SCHEDULE_REFUSED: {
        "kk": "Квота кестесі қабылданбады ({count} себеп); бұрынғы кесте қолданыста қалады",
        "ru": "График квоты отклонён (причин: {count}); действует прежний график",
        "en": "Quota schedule refused ({count} reasons); the previous schedule stays in force",
    },
    # --- hourly quota -------------------------------------------------------------------
    Code.QUOTA_OK: {
        "kk": "{hour_ending}-сағат: {used_kwh} кВт·сағ пайдаланылды, болжам {forecast_kwh}"
        " / квота {allocation_kwh} кВт·сағ",
        "ru": "Час {hour_ending}: израсходовано {used_kwh} кВт·ч, прогноз {forecast_kwh}"
        " / квота {allocation_kwh} кВт·ч",
        "en": "Hour {hour_ending}: {used_kwh} kWh used, forecast {forecast_kwh}"
        " / allocation {allocation_kwh} kWh",
    },
    Code.QUOTA_WARN: {
        "kk": "{hour_ending}-сағат: болжам {forecast_kwh} кВт·сағ квотаның {warn_percent}%-ынан"
        " асады ({allocation_kwh} кВт·сағ); сағат соңына дейін орташа қуат {allowed_kw} кВт"
        " аспауы керек",
        "ru": "Час {hour_ending}: прогноз {forecast_kwh} кВт·ч превышает {warn_percent}% квоты"
        " ({allocation_kwh} кВт·ч); до конца часа средняя мощность не более {allowed_kw} кВт",
        "en": "Hour {hour_ending}: forecast {forecast_kwh} kWh is above {warn_percent}% of the"
        " allocation ({allocation_kwh} kWh); keep to {allowed_kw} kW for the rest of the hour",
    },
    Code.QUOTA_FORECAST_OVER: {
        "kk": "{hour_ending}-сағат: қазіргі {p_kw} кВт қуатпен квота асып кетеді — болжам"
        " {forecast_kwh}, квота {allocation_kwh} кВт·сағ; қуатты {allowed_kw} кВт-қа дейін"
        " төмендетіңіз",
        "ru": "Час {hour_ending}: при текущей мощности {p_kw} кВт квота будет превышена —"
        " прогноз {forecast_kwh}, квота {allocation_kwh} кВт·ч; снизьте мощность до"
        " {allowed_kw} кВт",
        "en": "Hour {hour_ending}: at the present {p_kw} kW the allocation will be exceeded —"
        " forecast {forecast_kwh}, allocation {allocation_kwh} kWh; reduce to {allowed_kw} kW",
    },
    Code.QUOTA_EXCEEDED: {
        "kk": "{hour_ending}-сағат: квота асып кетті — {used_kwh} кВт·сағ пайдаланылды,"
        " квота {allocation_kwh} кВт·сағ",
        "ru": "Час {hour_ending}: квота превышена — израсходовано {used_kwh} кВт·ч при квоте"
        " {allocation_kwh} кВт·ч",
        "en": "Hour {hour_ending}: allocation exceeded — {used_kwh} kWh used of"
        " {allocation_kwh} kWh",
    },
    Code.QUOTA_NO_ALLOCATION: {
        "kk": "{date} күнгі {hour_ending}-сағатқа электр энергиясына квота жоқ ({site}, {source})",
        "ru": "Нет квоты на электрическую энергию на {date}, час {hour_ending} ({site}, {source})",
        "en": "No electricity allocation for {date} hour {hour_ending} ({site}, {source})",
    },
    Code.QUOTA_NO_DATA: {
        "kk": "{hour_ending}-сағат: есептегіштен осы сағатқа деректер жоқ",
        "ru": "Час {hour_ending}: нет данных счётчика за этот час",
        "en": "Hour {hour_ending}: no meter data for this hour",
    },
    Code.QUOTA_UNDER_USE: {
        "kk": "Төленген квотаның тек {percent}%-ы пайдаланылады: болжам {forecast_kwh}"
        " / {allocation_kwh} кВт·сағ",
        "ru": "Используется лишь {percent}% оплаченной квоты: прогноз {forecast_kwh}"
        " / {allocation_kwh} кВт·ч",
        "en": "Only {percent}% of the paid allocation will be used: forecast {forecast_kwh}"
        " / {allocation_kwh} kWh",
    },
    Code.METER_STALE: {
        "kk": "Есептегіштің соңғы деректері {age_s} с бұрын алынған (шегі {limit_s} с);"
        " болжам соңғы белгілі қуатпен жасалды",
        "ru": "Последние данные счётчика получены {age_s} с назад (предел {limit_s} с);"
        " прогноз по последней известной мощности",
        "en": "Meter data is {age_s} s old (limit {limit_s} s); forecast uses the last known power",
    },
    Code.METER_COUNTER_MISSING: {
        "kk": "Есептегіш энергия санауышын бермеді; энергия қуат бойынша есептелді",
        "ru": "Счётчик не передал показания энергии; энергия рассчитана по мощности",
        "en": "Meter gave no energy counter; energy was integrated from power",
    },
    Code.METER_COUNTER_WENT_BACK: {
        "kk": "Есептегіш санауышы кеміді (ауыстырылған немесе нөлденген); сол аралық қуат"
        " бойынша есептелді",
        "ru": "Показания счётчика уменьшились (замена или сброс); этот участок рассчитан по"
        " мощности",
        "en": "Meter counter went backwards (reset or replaced); that span was integrated from"
        " power",
    },
    Code.METER_HOUR_START_ESTIMATED: {
        "kk": "Сағат басынан {first_sample} дейінгі деректер жоқ; сол аралық бағаланды",
        "ru": "Нет данных от начала часа до {first_sample}; этот участок оценён",
        "en": "No data from the start of the hour to {first_sample}; that span is estimated",
    },
    Code.METER_GAP: {
        "kk": "Есептегіш деректерінде {seconds} с үзіліс бар (шегі {limit_s} с)",
        "ru": "Разрыв в данных счётчика {seconds} с (предел {limit_s} с)",
        "en": "Meter data has a gap of {seconds} s (limit {limit_s} s)",
    },
    # --- item 5: grid connection --------------------------------------------------------
    Code.GRID_OK: {
        "kk": "Техникалық шарттар № {tc_number}: {substation} трансформаторлық қосалқы станциясы,"
        " {voltage_kv} кВ, рұқсат етілген қуат {permitted_mw} МВт; ең жоғары жүктеме"
        " {peak_kw} кВт",
        "ru": "Технические условия № {tc_number}: трансформаторная подстанция {substation},"
        " {voltage_kv} кВ, разрешённая мощность {permitted_mw} МВт; пиковая нагрузка"
        " {peak_kw} кВт",
        "en": "Technical conditions No. {tc_number}: transformer substation {substation},"
        " {voltage_kv} kV, permitted capacity {permitted_mw} MW; peak demand {peak_kw} kW",
    },
    Code.GRID_OFF_GRID_EXEMPT: {
        "kk": "Бірыңғай электр энергетикалық жүйесіне қосылмаған генерациялау қондырғыларынан"
        " энергия пайдаланылады: талап қолданылмайды",
        "ru": "Используется энергия генерирующих установок, не подключённых к единой"
        " электроэнергетической системе: требование не применяется",
        "en": "Electricity from generating units not connected to the unified power system:"
        " the requirement does not apply",
    },
    Code.GRID_PRE_2023: {
        "kk": "Желіге {connected_on} қосылған ({rule_start} дейін): талап өз редакциясында"
        " қолданылады, 35 кВ / 1 МВт шегі тексерілмейді",
        "ru": "Подключение к сети {connected_on} (до {rule_start}): требование применяется в"
        " своей редакции, пороги 35 кВ / 1 МВт не проверяются",
        "en": "Connected to the grid on {connected_on} (before {rule_start}): the rule applies"
        " in its own form; the 35 kV / 1 MW minimums are not checked",
    },
    Code.GRID_TC_MISSING: {
        "kk": "Энергия беруші ұйымның техникалық шарттарының нөмірі көрсетілмеген",
        "ru": "Не указан номер технических условий энергопередающей организации",
        "en": "No technical conditions number from the energy transmitting organization",
    },
    Code.GRID_VOLTAGE_LOW: {
        "kk": "Қосылу кернеуі {voltage_kv} кВ — кемінде {min_kv} кВ трансформаторлық қосалқы"
        " станция керек",
        "ru": "Напряжение подключения {voltage_kv} кВ — нужна трансформаторная подстанция не"
        " ниже {min_kv} кВ",
        "en": "Connection voltage {voltage_kv} kV — a transformer substation of at least"
        " {min_kv} kV is required",
    },
    Code.GRID_CAPACITY_LOW: {
        "kk": "Рұқсат етілген қуат {permitted_mw} МВт — кемінде {min_mw} МВт болуы керек",
        "ru": "Разрешённая мощность {permitted_mw} МВт — должна быть не менее {min_mw} МВт",
        "en": "Permitted capacity {permitted_mw} MW — at least {min_mw} MW is required",
    },
    Code.GRID_PEAK_OVER_PERMITTED: {
        "kk": "Өлшенген ең жоғары жүктеме {peak_kw} кВт рұқсат етілген қуаттан"
        " ({permitted_kw} кВт) асады",
        "ru": "Измеренная пиковая нагрузка {peak_kw} кВт превышает разрешённую мощность"
        " ({permitted_kw} кВт)",
        "en": "Measured peak demand {peak_kw} kW exceeds the permitted capacity"
        " ({permitted_kw} kW)",
    },
    Code.GRID_PEAK_UNKNOWN: {
        "kk": "Ең жоғары жүктеме әлі өлшенбеген",
        "ru": "Пиковая нагрузка ещё не измерена",
        "en": "Peak demand not measured yet",
    },
    # --- item 7: pool and data centre ---------------------------------------------------
    Code.POOLS_OK: {
        "kk": "{miners} майнер аккредиттелген цифрлық майнингтік пул арқылы жұмыс істейді;"
        " цифрлық майнинг деректерін өңдеу орталығы {data_centre_id}",
        "ru": "{miners} майнеров работают через аккредитованный цифровой майнинговый пул;"
        " центр обработки данных цифрового майнинга {data_centre_id}",
        "en": "{miners} miners mine through an accredited digital mining pool; digital mining"
        " data processing centre {data_centre_id}",
    },
    Code.POOLS_NOT_ACCREDITED: {
        "kk": "{miners} майнер аккредиттелмеген пулдарда: {pools}",
        "ru": "{miners} майнеров работают на неаккредитованных пулах: {pools}",
        "en": "{miners} miners on pools that are not accredited: {pools}",
    },
    Code.POOLS_NONE_ACTIVE: {
        "kk": "{miners} майнерде белсенді пул жоқ",
        "ru": "У {miners} майнеров нет активного пула",
        "en": "{miners} miners have no active pool",
    },
    Code.POOLS_MINER_NOT_ACCREDITED: {
        "kk": "Аппараттық-бағдарламалық кешен {device_id} аккредиттелмеген пулда: {pool}",
        "ru": "Аппаратно-программный комплекс {device_id} работает на неаккредитованном пуле"
        " {pool}",
        "en": "Miner {device_id} mines on a pool that is not accredited: {pool}",
    },
    Code.POOLS_MINER_NO_POOL: {
        "kk": "Аппараттық-бағдарламалық кешен {device_id} жұмыс істеп тұр, бірақ белсенді пулы жоқ",
        "ru": "Аппаратно-программный комплекс {device_id} работает без активного пула",
        "en": "Miner {device_id} is mining with no active pool",
    },
    Code.POOLS_LIST_EMPTY: {
        "kk": "Аккредиттелген цифрлық майнингтік пулдар тізімі бапталмаған",
        "ru": "Не задан список аккредитованных цифровых майнинговых пулов",
        "en": "No accredited digital mining pools are configured",
    },
    Code.POOLS_NO_MINERS: {
        "kk": "Тексеретін майнер жоқ (ешбірі жұмыс істемейді немесе жауап бермейді)",
        "ru": "Нет майнеров для проверки (ни один не работает или не отвечает)",
        "en": "No miners to check (none mining or none answering)",
    },
    Code.DC_NOT_REGISTERED: {
        "kk": "Алаң цифрлық майнинг деректерін өңдеу орталығы ретінде тіркелмеген"
        " (нөмірі: {data_centre_id})",
        "ru": "Площадка не зарегистрирована как центр обработки данных цифрового майнинга"
        " (номер: {data_centre_id})",
        "en": "The site is not registered as a digital mining data processing centre"
        " (id: {data_centre_id})",
    },
    # --- energy balance -----------------------------------------------------------------
    Code.BALANCE_OK: {
        "kk": "Энергия балансы сәйкес: есептегіш {meter_kw} кВт, есепке алынған {accounted_kw} кВт",
        "ru": "Баланс мощности сходится: счётчик {meter_kw} кВт, учтено {accounted_kw} кВт",
        "en": "Power balance holds: meter {meter_kw} kW, accounted {accounted_kw} kW",
    },
    Code.BALANCE_UNREGISTERED_LOAD: {
        "kk": "Тіркелмеген жүктеме: есептегіш {meter_kw} кВт, {level} бойынша {accounted_kw}"
        " кВт — {excess_kw} кВт есепке алынбаған (рұқсат етілген ауытқу {tolerance_kw} кВт)",
        "ru": "Неучтённая нагрузка: счётчик {meter_kw} кВт, по {level} {accounted_kw} кВт —"
        " {excess_kw} кВт не учтено (допуск {tolerance_kw} кВт)",
        "en": "Unregistered load: meter {meter_kw} kW, {level} {accounted_kw} kW —"
        " {excess_kw} kW unaccounted (tolerance {tolerance_kw} kW)",
    },
    Code.BALANCE_METER_BELOW_LOAD: {
        "kk": "Есептегіш ({meter_kw} кВт) {level} жиынтығынан ({accounted_kw} кВт) {deficit_kw}"
        " кВт аз: есептегішті немесе құрылғы деректерін тексеріңіз",
        "ru": "Счётчик ({meter_kw} кВт) меньше суммы по {level} ({accounted_kw} кВт) на"
        " {deficit_kw} кВт: проверьте счётчик или данные устройств",
        "en": "Meter ({meter_kw} kW) reads {deficit_kw} kW below the {level} total"
        " ({accounted_kw} kW): check the meter or the devices' figures",
    },
    Code.BALANCE_NO_DATA: {
        "kk": "Баланс есептелмейді: деректер жоқ — {missing}",
        "ru": "Баланс не рассчитан: нет данных — {missing}",
        "en": "Balance not computed: no data for {missing}",
    },
    # --- settlement: the commercial meter's closed hour against kuat's ledger ------------
    Code.SETTLEMENT_OK: {
        "kk": "{hour} сағаты: коммерциялық есептегіш {meter_kwh} кВт·сағ, kuat {kuat_kwh}"
        " кВт·сағ — сәйкес (айырма {difference_kwh} кВт·сағ, рұқсат етілген ауытқу"
        " {tolerance_kwh} кВт·сағ)",
        "ru": "Час {hour}: коммерческий счётчик {meter_kwh} кВт·ч, kuat {kuat_kwh} кВт·ч —"
        " сходятся (разница {difference_kwh} кВт·ч, допуск {tolerance_kwh} кВт·ч)",
        "en": "Hour {hour}: commercial meter {meter_kwh} kWh, kuat {kuat_kwh} kWh — agree"
        " (difference {difference_kwh} kWh, tolerance {tolerance_kwh} kWh)",
    },
    Code.SETTLEMENT_MISMATCH: {
        "kk": "{hour} сағаты: коммерциялық есептегіш {meter_kwh} кВт·сағ, kuat {kuat_kwh}"
        " кВт·сағ — айырма {difference_kwh} кВт·сағ рұқсат етілген ауытқудан ({tolerance_kwh}"
        " кВт·сағ) асады: есептегіштерді және өлшеу трансформаторларын тексеріңіз",
        "ru": "Час {hour}: коммерческий счётчик {meter_kwh} кВт·ч, kuat {kuat_kwh} кВт·ч —"
        " расхождение {difference_kwh} кВт·ч сверх допуска {tolerance_kwh} кВт·ч: проверьте"
        " счётчики и измерительные трансформаторы",
        "en": "Hour {hour}: commercial meter {meter_kwh} kWh, kuat {kuat_kwh} kWh — they"
        " differ by {difference_kwh} kWh, beyond the tolerance of {tolerance_kwh} kWh: check"
        " the meters and their instrument transformers",
    },
    Code.SETTLEMENT_METER_INCOMPLETE: {
        "kk": "{hour} сағаты салыстырылмады: коммерциялық есептегіштің жүктеме профилі"
        " сағатты толық қамтымайды ({entries} жазба)",
        "ru": "Час {hour} не сверен: профиль нагрузки коммерческого счётчика не покрывает"
        " час полностью ({entries} записей)",
        "en": "Hour {hour} not reconciled: the commercial meter's load profile does not"
        " cover the hour ({entries} entries)",
    },
    Code.SETTLEMENT_LEDGER_INCOMPLETE: {
        "kk": "{hour} сағаты салыстырылмады: kuat бұл сағатты толық өлшемеді"
        " ({ledger_meter} есептегіші; коммерциялық есептегіш {meter_kwh} кВт·сағ)",
        "ru": "Час {hour} не сверен: kuat измерил этот час не полностью (счётчик"
        " {ledger_meter}; коммерческий счётчик {meter_kwh} кВт·ч)",
        "en": "Hour {hour} not reconciled: kuat did not meter the whole hour (meter"
        " {ledger_meter}; the commercial meter says {meter_kwh} kWh)",
    },
    # --- curtailment --------------------------------------------------------------------
    Code.CURTAIL_SLEEP: {
        "kk": "{device_id} ұйқы режиміне ауыстырылады: {power_w} Вт, {j_per_th} Дж/ТХ"
        " (ең аз тиімді)",
        "ru": "{device_id} переводится в сон: {power_w} Вт, {j_per_th} Дж/ТХ (наименее"
        " эффективный)",
        "en": "Sleep {device_id}: {power_w} W, {j_per_th} J/TH (least efficient first)",
    },
    Code.CURTAIL_RESTORE: {
        "kk": "{device_id} қайта қосылады: {power_w} Вт, {j_per_th} Дж/ТХ (қуат қоры бар)",
        "ru": "{device_id} возвращается в работу: {power_w} Вт, {j_per_th} Дж/ТХ (есть запас"
        " мощности)",
        "en": "Restore {device_id}: {power_w} W, {j_per_th} J/TH (headroom available)",
    },
    Code.CURTAIL_HOLD_MIN_ON: {
        "kk": "{device_id} әлі {wait_s} с жұмыс істеуі керек (ең аз қосулы уақыт)",
        "ru": "{device_id} должен проработать ещё {wait_s} с (минимальное время работы)",
        "en": "{device_id} must stay on {wait_s} s more (minimum on time)",
    },
    Code.CURTAIL_HOLD_MIN_OFF: {
        "kk": "{device_id} әлі {wait_s} с ұйқыда тұруы керек (ең аз ажыратылған уақыт)",
        "ru": "{device_id} должен оставаться во сне ещё {wait_s} с (минимальное время простоя)",
        "en": "{device_id} must stay asleep {wait_s} s more (minimum off time)",
    },
    Code.CURTAIL_WITHIN_LIMIT: {
        "kk": "Жүктеме {load_kw} кВт рұқсат етілген {allowed_kw} кВт шегінде: өзгеріс жоқ",
        "ru": "Нагрузка {load_kw} кВт в пределах допустимых {allowed_kw} кВт: без изменений",
        "en": "Load {load_kw} kW is within the allowed {allowed_kw} kW: no change",
    },
    Code.CURTAIL_HYSTERESIS: {
        "kk": "Қуат қоры {headroom_kw} кВт, гистерезис {hysteresis_kw} кВт: әзірге қайта"
        " қосылмайды",
        "ru": "Запас мощности {headroom_kw} кВт меньше гистерезиса {hysteresis_kw} кВт:"
        " возврат пока не выполняется",
        "en": "Headroom {headroom_kw} kW is inside the hysteresis band ({hysteresis_kw} kW):"
        " nothing restored yet",
    },
    Code.CURTAIL_SHORTFALL: {
        "kk": "Барлық рұқсат етілген ажыратулардан кейін де {excess_kw} кВт артық қалады",
        "ru": "Даже после всех допустимых отключений остаётся превышение {excess_kw} кВт",
        "en": "{excess_kw} kW still over after every switch the timers allow",
    },
    Code.CURTAIL_NO_LIMIT: {
        "kk": "Рұқсат етілген қуат белгісіз (квота жоқ): шектеу жасалмайды",
        "ru": "Допустимая мощность неизвестна (нет квоты): ограничение не выполняется",
        "en": "No allowed power known (no allocation): no curtailment",
    },
    Code.CURTAIL_LIMIT_POWER: {
        "kk": "{device_id} қуат шегі {from_w} Вт-тан {to_w} Вт-қа төмендетіледі ({saved_w} Вт"
        " үнемделеді, {j_per_th} Дж/ТХ, ең аз тиімді): майнинг жалғасады",
        "ru": "{device_id}: лимит мощности снижается с {from_w} до {to_w} Вт (экономия"
        " {saved_w} Вт, {j_per_th} Дж/ТХ, наименее эффективный): майнинг продолжается",
        "en": "Limit {device_id} from {from_w} W to {to_w} W (saves {saved_w} W, {j_per_th}"
        " J/TH, least efficient first): it keeps mining",
    },
    Code.CURTAIL_RESTORE_POWER: {
        "kk": "{device_id} қуат шегі {from_w} Вт-тан {to_w} Вт-қа көтеріледі ({j_per_th}"
        " Дж/ТХ, қуат қоры бар)",
        "ru": "{device_id}: лимит мощности повышается с {from_w} до {to_w} Вт ({j_per_th}"
        " Дж/ТХ, есть запас мощности)",
        "en": "Raise {device_id}'s power limit from {from_w} W to {to_w} W ({j_per_th} J/TH,"
        " headroom available)",
    },
    Code.CURTAIL_HOLD_LIMIT: {
        "kk": "{device_id} қуат шегін тағы {wait_s} с өзгертуге болмайды (шекті өзгертулер"
        " арасындағы ең аз уақыт)",
        "ru": "Лимит мощности {device_id} нельзя менять ещё {wait_s} с (минимальное время между"
        " изменениями лимита)",
        "en": "{device_id}'s power limit must stay {wait_s} s more (minimum time between"
        " limit changes)",
    },
    Code.CURTAIL_OUTLET_OFF: {
        "kk": "{device_id} ұйқы режиміне ауыса алмайды: PDU розеткасы {outlet} ажыратылады"
        " ({power_w} Вт, {j_per_th} Дж/ТХ, соңғы шара)",
        "ru": "{device_id} не может перейти в сон: отключается розетка PDU {outlet} ({power_w}"
        " Вт, {j_per_th} Дж/ТХ, крайняя мера)",
        "en": "{device_id} cannot sleep: switch off PDU outlet {outlet} ({power_w} W,"
        " {j_per_th} J/TH, last resort)",
    },
    Code.CURTAIL_OUTLET_ON: {
        "kk": "{device_id} PDU розеткасы {outlet} қайта қосылады: {power_w} Вт, {j_per_th}"
        " Дж/ТХ (қуат қоры бар)",
        "ru": "Розетка PDU {outlet} для {device_id} включается снова: {power_w} Вт, {j_per_th}"
        " Дж/ТХ (есть запас мощности)",
        "en": "Switch PDU outlet {outlet} back on for {device_id}: {power_w} W, {j_per_th}"
        " J/TH (headroom available)",
    },
    Code.CURTAIL_HOLD_HORIZON: {
        "kk": "{device_id} қайта қосылмайды: сағат аяқталуына {left_s} с қалды, ал келесі"
        " сағаттың квотасы ({next_kw} кВт) оны көтермейді",
        "ru": "{device_id} не возвращается в работу: до конца часа {left_s} с, а квота"
        " следующего часа ({next_kw} кВт) его не вместит",
        "en": "{device_id} not restored: {left_s} s left in the hour and the next hour's"
        " allocation ({next_kw} kW) would not carry it",
    },
    # --- external curtailment orders ----------------------------------------------------
    Code.ORDER_NOT_JSON: {
        "kk": "Жүктемені шектеу өкімі JSON емес: {error}",
        "ru": "Распоряжение об ограничении нагрузки не является JSON: {error}",
        "en": "Curtailment order is not JSON: {error}",
    },
    Code.ORDER_BAD_SHAPE: {
        "kk": "Шектеу өкімінің құрылымы дұрыс емес: күтілгені — {expected}",
        "ru": "Неверная структура распоряжения: ожидается {expected}",
        "en": "Curtailment order has the wrong shape: expected {expected}",
    },
    Code.ORDER_DUPLICATE_KEY: {
        "kk": "Шектеу өкімінде «{field}» өрісі екі рет берілген",
        "ru": "В распоряжении поле «{field}» указано дважды",
        "en": "Curtailment order gives «{field}» twice",
    },
    Code.ORDER_MISSING_FIELD: {
        "kk": "Шектеу өкімінде «{field}» өрісі жоқ",
        "ru": "В распоряжении нет поля «{field}»",
        "en": "Curtailment order has no «{field}»",
    },
    Code.ORDER_BAD_FIELD: {
        "kk": "Шектеу өкімінің «{field}» өрісі дұрыс емес: «{value}»",
        "ru": "Неверное значение поля «{field}» в распоряжении: «{value}»",
        "en": "Curtailment order has a bad «{field}»: «{value}»",
    },
    Code.ORDER_UNKNOWN_ISSUER: {
        "kk": "Өкім жіберушісі «{issuer}» белгісіз: оның кілті бапталмаған",
        "ru": "Неизвестный отправитель распоряжения «{issuer}»: его ключ не настроен",
        "en": "Unknown order issuer «{issuer}»: no key is configured for it",
    },
    Code.ORDER_BAD_SIGNATURE: {
        "kk": "«{issuer}» өкімінің қолтаңбасы жарамсыз: өкім жалған немесе өзгертілген",
        "ru": "Подпись распоряжения от «{issuer}» неверна: распоряжение подделано или изменено",
        "en": "Signature of the order from «{issuer}» does not verify: forged or altered",
    },
    Code.ORDER_WRONG_SITE: {
        "kk": "Өкім басқа алаңға арналған: {site} (бұл алаң — {expected})",
        "ru": "Распоряжение адресовано другой площадке: {site} (эта площадка — {expected})",
        "en": "Order is addressed to another site: {site} (this site is {expected})",
    },
    Code.ORDER_END_BEFORE_START: {
        "kk": "Өкімнің аяқталуы ({end}) басталуынан ({start}) кейін емес",
        "ru": "Окончание распоряжения ({end}) не позже его начала ({start})",
        "en": "Order ends ({end}) no later than it starts ({start})",
    },
    Code.ORDER_NEGATIVE_TARGET: {
        "kk": "Өкімдегі қуат шегі теріс: {target_mw} МВт",
        "ru": "Отрицательный предел мощности в распоряжении: {target_mw} МВт",
        "en": "Order gives a negative power limit: {target_mw} MW",
    },
    Code.ORDER_EXPIRED: {
        "kk": "Өкімнің мерзімі өтіп кеткен: {end} аяқталды (қазір {now})",
        "ru": "Срок распоряжения истёк: окончание {end} (сейчас {now})",
        "en": "Order has expired: it ended {end} (now {now})",
    },
    Code.ORDER_TOO_FAR_AHEAD: {
        "kk": "Өкім тым алыс мерзімге берілген: басталуы {start}, ең көбі {max_ahead_h} сағат"
        " алға рұқсат",
        "ru": "Распоряжение выдано слишком далеко вперёд: начало {start}, допускается не более"
        " {max_ahead_h} ч вперёд",
        "en": "Order starts too far ahead: {start}, at most {max_ahead_h} h ahead is accepted",
    },
    Code.ORDER_ISSUED_IN_FUTURE: {
        "kk": "Өкімнің берілген уақыты ({issued_at}) болашақта (қазір {now}): жіберушінің"
        " сағатын тексеріңіз",
        "ru": "Время выдачи распоряжения ({issued_at}) в будущем (сейчас {now}): проверьте"
        " часы отправителя",
        "en": "Order is stamped as issued in the future ({issued_at}, now {now}): check the"
        " issuer's clock",
    },
    Code.ORDER_REFUSED: {
        "kk": "Жүктемені шектеу өкімі қабылданбады ({count} себеп); қолданыстағы өкімдер"
        " өзгеріссіз",
        "ru": "Распоряжение об ограничении нагрузки отклонено (причин: {count}); действующие"
        " распоряжения не изменены",
        "en": "Curtailment order refused ({count} reasons); the orders in force are unchanged",
    },
    Code.ORDER_ADDED: {
        "kk": "{issuer} жүктемені шектеу өкімі {id}: {start} – {end} аралығында {target_mw}"
        " МВт-тан аспау",
        "ru": "Распоряжение {id} от {issuer}: с {start} по {end} не более {target_mw} МВт",
        "en": "Order {id} from {issuer}: at most {target_mw} MW from {start} to {end}",
    },
    Code.ORDER_REPLACED: {
        "kk": "{issuer} өкімі {id} жаңартылды: {start} – {end}, {target_mw} МВт (бұрын"
        " {previous_mw} МВт)",
        "ru": "Распоряжение {id} от {issuer} изменено: с {start} по {end} не более {target_mw}"
        " МВт (было {previous_mw} МВт)",
        "en": "Order {id} from {issuer} revised: at most {target_mw} MW from {start} to {end}"
        " (was {previous_mw} MW)",
    },
    Code.ORDER_CANCELLED: {
        "kk": "{issuer} өкімі {id} күшін жойды",
        "ru": "Распоряжение {id} от {issuer} отменено",
        "en": "Order {id} from {issuer} withdrawn",
    },
    Code.ORDER_UNCHANGED: {
        "kk": "{issuer} өкімі {id} өзгермеген",
        "ru": "Распоряжение {id} от {issuer} не изменилось",
        "en": "Order {id} from {issuer} unchanged",
    },
    Code.ORDER_NOT_NEWER: {
        "kk": "{issuer} өкімі {id} жаңа емес ({issued_at}, қолданыстағысы {held_issued_at}):"
        " қолданыстағысы сақталды",
        "ru": "Распоряжение {id} от {issuer} не новее действующего ({issued_at}, действующее"
        " {held_issued_at}): оставлено действующее",
        "en": "Order {id} from {issuer} is not newer than the one held ({issued_at}, held"
        " {held_issued_at}): the held one stays",
    },
    Code.ORDER_ENDED: {
        "kk": "{issuer} өкімі {id} аяқталды ({end})",
        "ru": "Распоряжение {id} от {issuer} завершилось ({end})",
        "en": "Order {id} from {issuer} ended ({end})",
    },
    Code.ORDER_LIMIT: {
        "kk": "{issuer} өкімі {id} бойынша қуат {end} дейін {target_mw} МВт-пен шектелген",
        "ru": "Мощность ограничена распоряжением {id} от {issuer}: не более {target_mw} МВт"
        " до {end}",
        "en": "Power is limited by order {id} from {issuer}: at most {target_mw} MW until {end}",
    },
}


# Parameter values that are words, not data: translated (in the grammatical form the templates
# need) rather than shown as codes.
TERMS: dict[tuple[str, str], dict[Lang, str]] = {
    ("level", "pdu"): {"kk": "PDU кірістері", "ru": "вводам PDU", "en": "PDU inlets"},
    ("level", "miners"): {
        "kk": "майнерлер мен қосалқы жүктеме",
        "ru": "майнерам и собственным нуждам",
        "en": "miners plus overhead",
    },
    ("missing", "meter"): {"kk": "есептегіш", "ru": "счётчик", "en": "the meter"},
    ("missing", "pdu"): {"kk": "PDU", "ru": "PDU", "en": "PDUs"},
    ("missing", "miners"): {
        "kk": "майнерлер қуаты",
        "ru": "мощность майнеров",
        "en": "miners' power",
    },
}


def _term(key: str, value: Any, lang: Lang) -> str:
    if isinstance(value, list):
        return ", ".join(_term(key, v, lang) for v in value)
    if isinstance(value, str) and (key, value) in TERMS:
        return TERMS[(key, value)][lang]
    return _fmt(value, lang)


class _Params(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fmt(value: Any, lang: Lang) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return {"kk": ("иә", "жоқ"), "ru": ("да", "нет"), "en": ("yes", "no")}[lang][
            0 if value else 1
        ]
    if isinstance(value, float):
        text = f"{value:.1f}".removesuffix(".0")
        return text.replace(".", ",") if lang != "en" else text
    if isinstance(value, list | tuple):
        return ", ".join(_fmt(v, lang) for v in value)
    return str(value)


def render(reason: Reason, lang: Lang = "en") -> str:
    """The reason as one line for an operator, in ``lang`` ("kk", "ru" or "en")."""
    if lang not in LANGS:
        raise ValueError(f"language must be one of {', '.join(LANGS)}, got {lang!r}")
    texts = CATALOG.get(Code(reason.code))
    if texts is None:  # a code without text is a bug; show the code rather than nothing
        return str(reason.code)
    params = _Params({k: _term(k, v, lang) for k, v in reason.params.items()})
    return texts[lang].format_map(params)
