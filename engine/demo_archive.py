"""Demo credit archive for 许昌市魏都区: about thirty records, created through the operations.

Every subject is invented; codes and 身份证号 are made up but carry valid check characters.
认定日期 are counted back from `today`, so whenever the seed runs some records are repairable
and some not, a few are under objection, corrected, revoked, repaired or expired.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from . import credit
from .forms import id_card_check_char, uscc_check_char

WEIDU = "411002"  # 许昌市魏都区
ORG_CODE_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def org_code(body: str) -> str:
    """A 组织机构代码 (GB 11714-1997): eight characters plus their check character."""
    values = [int(c) if c.isdigit() else ord(c) - ord("A") + 10 for c in body]
    check = 11 - sum(v * w for v, w in zip(values, ORG_CODE_WEIGHTS, strict=True)) % 11
    return body + {10: "X", 11: "0"}.get(check, str(check))


def uscc(prefix: str, body: str, division: str = WEIDU) -> str:
    """A 统一社会信用代码: authority and type (`prefix`), division, organisation code, check."""
    first17 = prefix + division + org_code(body)
    return first17 + uscc_check_char(first17)


def id_number(born: str, sequence: int, division: str = WEIDU) -> str:
    """A 身份证号: division, birth date YYYYMMDD, 3-digit sequence (odd: male), check."""
    first17 = f"{division}{born}{sequence:03d}"
    return first17 + id_card_check_char(first17)


@dataclass(frozen=True)
class DemoRecord:
    key: str
    subject_type: str
    subject_name: str
    subject_code: str
    category: str
    severity: str
    doc_no: str
    days_ago: int
    facts: str
    contact_phone: str | None = None


# 91: 市场监管-企业; 92: 市场监管-个体工商户; 11: 机构编制-机关.
RECORDS = (
    DemoRecord(
        "hengtai", "unit", "许昌恒泰化工贸易有限公司", uscc("91", "MA44FR2K"),
        "行政处罚", "general", "许魏应急罚〔2026〕15号", 120,
        "该公司危险化学品经营场所未按规定设置明显的安全警示标志，储存的甲类危险化学品"
        "未进行重大危险源辨识，违反《危险化学品安全管理条例》第二十条，处罚款三万元。",
        "13800003801",
    ),
    DemoRecord(
        "xinsheng", "unit", "许昌市魏都区鑫盛烟花爆竹经营部", uscc("92", "MA9G3L7N"),
        "行政处罚", "minor", "许魏应急罚〔2026〕31号", 40,
        "超出许可证载明的存放限量储存烟花爆竹，已当场责令改正，首次违法且危害后果轻微，"
        "依法从轻处罚，警告并处罚款二千元。",
        "13800003802",
    ),
    DemoRecord(
        "hongda", "unit", "许昌宏达石料有限公司", uscc("91", "7178H3D5"),
        "行政处罚", "serious", "许魏应急罚〔2025〕22号", 430,
        "非煤矿山（建筑石料用灰岩矿）未按批准的开采设计组织生产，边坡角度超过设计要求，"
        "且拒不执行停产整顿指令，依据《安全生产法》第一百零二条处罚款十五万元。",
        "0374-5100022",
    ),
    DemoRecord(
        "jinyuan", "unit", "许昌金源燃气有限公司", uscc("91", "MA40AB1C"),
        "司法判决", "serious", "（2024）豫1002刑初318号", 700,
        "因液化石油气充装站违规充装导致较大事故，公司主要负责人被以重大责任事故罪"
        "判处有期徒刑，判决已生效。",
    ),
    DemoRecord(
        "ruifeng", "unit", "许昌瑞丰机械制造有限公司", uscc("91", "MA45UT6P"),
        "行政处罚", "general", "许魏应急罚〔2026〕4号", 300,
        "抛光打磨车间涉爆粉尘除尘系统未按规定采取防火防爆措施，粉尘清扫制度未落实，"
        "违反《工贸企业粉尘防爆安全规定》，处罚款二万元。",
    ),
    DemoRecord(
        "jiamei", "unit", "许昌佳美食品有限公司", uscc("91", "MA9F2K8D"),
        "行政处罚", "general", "许魏应急罚〔2026〕27号", 75,
        "涉氨制冷车间未设置氨气泄漏报警装置，液氨储罐区应急预案未演练，处罚款二万五千元。",
        "13800003806",
    ),
    DemoRecord(
        "fumantang", "unit", "许昌市魏都区福满堂烟花爆竹零售店", uscc("92", "MA9H7Q1R"),
        "投诉核实", "minor", "魏应急核〔2026〕18号", 25,
        "群众举报该店在居民楼底层违规存放烟花爆竹，经核查属实，已责令立即清理。",
    ),
    DemoRecord(
        "dexin", "unit", "许昌德信建材有限公司", uscc("91", "MA47C2WX"),
        "行政处罚", "serious", "许魏应急罚〔2026〕19号", 180,
        "组织有限空间作业未执行“先通风、再检测、后作业”要求，造成一人死亡的生产安全事故，"
        "对事故负有责任，依据《安全生产法》第一百一十四条处罚款三十万元。",
    ),
    DemoRecord(
        "huaxin", "unit", "许昌华新纺织有限公司", uscc("91", "70635128"),
        "投诉核实", "general", "魏应急核〔2026〕9号", 200,
        "举报特种作业人员无证上岗、新员工未经安全培训即上岗作业，经核查属实。",
        "13800003809",
    ),
    DemoRecord(
        "yongxing", "unit", "许昌永兴化工有限公司", uscc("91", "MA44KD5Y"),
        "行政处罚", "minor", "许魏应急罚〔2026〕2号", 260,
        "安全生产管理人员未按规定参加安全生产知识和管理能力考核，处警告。",
    ),
    DemoRecord(
        "zhengda", "unit", "许昌正达钢结构有限公司", uscc("91", "MA461N3L"),
        "行政处罚", "general", "许魏应急罚〔2025〕11号", 520,
        "高处作业未按规定配备安全防护设施，未建立事故隐患排查治理台账，处罚款一万五千元。",
    ),
    DemoRecord(
        "tianli", "unit", "许昌天力石业有限公司", uscc("91", "MA9CRT27"),
        "行政处罚", "general", "许魏应急罚〔2026〕24号", 95,
        "石材加工车间起重机械未按规定检验，作业人员未佩戴劳动防护用品，处罚款一万元。",
    ),
    DemoRecord(
        "anshun", "unit", "许昌安顺加油站有限公司", uscc("91", "MA41HJ9B"),
        "行政处罚", "minor", "许魏应急罚〔2026〕36号", 10,
        "加油站卸油作业时未按规定设置静电接地，首次违法且及时改正，处警告。",
    ),
    DemoRecord(
        "hongyun", "unit", "许昌市魏都区红运烟花爆竹批发有限公司", uscc("91", "MA3X8P4Q"),
        "行政处罚", "serious", "许魏应急罚〔2024〕13号", 880,
        "在非仓储场所非法储存烟花爆竹成品约三百箱，依据《烟花爆竹安全管理条例》第三十六条"
        "没收非法储存的烟花爆竹并处罚款五万元。",
    ),
    DemoRecord(
        "dingsheng", "unit", "许昌鼎盛铝业有限公司", uscc("91", "MA48EY2M"),
        "司法判决", "serious", "（2026）豫1002行审45号", 150,
        "拒不履行铝粉尘防爆整改的行政处罚决定，经申请人民法院强制执行。",
    ),
    DemoRecord(
        "hongli", "unit", "许昌宏利废旧物资回收有限公司", uscc("91", "MA9KL31T"),
        "投诉核实", "minor", "魏应急核〔2026〕11号", 150,
        "举报切割作业时未办理动火审批，经核查属实，已责令改正。",
    ),
    DemoRecord(
        "xincheng", "unit", "许昌新城化工物资有限公司", uscc("91", "MA40W5RN"),
        "行政处罚", "general", "许魏应急罚〔2026〕33号", 50,
        "危险化学品经营许可证有效期届满后继续经营，处罚款二万元。",
        "13800003817",
    ),
    DemoRecord(
        "huifeng", "unit", "许昌汇丰危险品仓储有限公司", uscc("91", "MA43DQ7G"),
        "行政处罚", "serious", "许魏应急罚〔2025〕9号", 560,
        "危险化学品仓库超量储存且混存禁忌物料，发生火灾险情后未如实报告，处罚款二十万元。",
        "0374-5100018",
    ),
    DemoRecord(
        "xida", "organ", "许昌市魏都区西大街道办事处", uscc("11", "00593621"),
        "问责处理", "general", "魏应急安委〔2026〕5号", 100,
        "对辖区内烟花爆竹非法储存点排查不力，属地监管责任落实不到位，予以通报问责。",
    ),
    DemoRecord(
        "dingzhuang", "organ", "许昌市魏都区丁庄街道办事处", uscc("11", "00593648"),
        "投诉核实", "minor", "魏应急核〔2026〕21号", 30,
        "举报辖区小作坊违规使用液化气钢瓶，街道未及时处置，经核查属实。",
    ),
    DemoRecord(
        "gaoqiaoying", "organ", "许昌市魏都区高桥营街道办事处", uscc("11", "00593656"),
        "司法判决", "general", "（2025）豫1002行初27号", 380,
        "行政诉讼败诉后未在判决确定的期限内履行生效判决。",
    ),
    DemoRecord(
        "wang", "person", "王某峰", id_number("19820315", 31),
        "政务处分", "general", "魏监处〔2026〕3号", 210,
        "在危险化学品专项执法检查中未按规定履行监管职责，对发现的隐患未督促整改，给予警告处分。",
    ),
    DemoRecord(
        "li", "person", "李某", id_number("19900708", 53),
        "纪律处分", "minor", "魏纪处〔2026〕12号", 60,
        "违规接受管理服务对象宴请，给予党内警告处分。",
        "13800003823",
    ),
    DemoRecord(
        "zhao", "person", "赵某华", id_number("19871122", 24),
        "问责处理", "general", "魏应急问〔2026〕4号", 45,
        "对举报件核查不深入、答复不及时，造成不良影响，予以诫勉。",
    ),
    DemoRecord(
        "chen", "person", "陈某", id_number("19760503", 17),
        "政务处分", "serious", "魏监处〔2025〕8号", 400,
        "在非煤矿山监管中滥用职权，违规为不具备条件的企业出具复工意见，给予记大过处分。",
    ),
    DemoRecord(
        "liu", "person", "刘某军", id_number("19790918", 75),
        "纪律处分", "serious", "魏纪处〔2026〕20号", 90,
        "在工贸企业执法检查中收受企业财物，给予留党察看一年处分。",
    ),
    DemoRecord(
        "sun", "person", "孙某", id_number("19930227", 11),
        "问责处理", "minor", "魏应急问〔2026〕9号", 15,
        "值班期间未按规定接听和登记12350举报电话，予以批评教育。",
    ),
    DemoRecord(
        "zhou", "person", "周某红", id_number("19850611", 46),
        "政务处分", "general", "魏监处〔2025〕15号", 330,
        "对烟花爆竹零售点审批把关不严，给予记过处分。",
        "13800003828",
    ),
    DemoRecord(
        "zhang", "person", "张某", id_number("19910404", 93),
        "投诉核实", "minor", "魏应急核〔2026〕25号", 20,
        "群众投诉执法人员在检查中态度生硬、未出示执法证件，经核实属实。",
    ),
    DemoRecord(
        "wu", "person", "吴某", id_number("19720109", 39),
        "司法判决", "serious", "（2024）豫1002刑初276号", 800,
        "对辖区企业重大事故隐患监管失职，被以玩忽职守罪判处有期徒刑一年、缓刑一年。",
    ),
)  # fmt: skip


def seed_demo_archive(session: Session, today: date | None = None) -> int:
    """Create the demo records unless the archive has any; returns how many were created."""
    if session.scalar(select(func.count()).select_from(credit.CreditRecord)):
        return 0
    today = today or credit.local_today()
    ids = {demo.key: _create(session, demo, today) for demo in RECORDS}
    _objections(session, ids, today)
    _repairs(session, ids, today)
    credit.expire_due(session, today)
    return len(ids)


def _create(session: Session, demo: DemoRecord, today: date) -> int:
    record = credit.create_record(
        session,
        actor="liaison",
        subject_type=demo.subject_type,
        subject_name=demo.subject_name,
        subject_code=demo.subject_code,
        category=demo.category,
        severity=demo.severity,
        doc_no=demo.doc_no,
        decided_at=today - timedelta(days=demo.days_ago),
        facts=demo.facts,
        contact_phone=demo.contact_phone,
        reason=f"依据{demo.doc_no}登记",
        today=today,
    )
    return record.id


def _objections(session: Session, ids: dict[str, int], today: date) -> None:
    def object_to(key: str, reason: str) -> int:
        credit.mark_under_objection(session, ids[key], actor="liaison", reason=reason)
        return ids[key]

    object_to("jiamei", "企业称已于处罚前安装氨气泄漏报警装置，提交了设备验收单")
    object_to("li", "本人称处分决定已被撤销，提交了复查决定书")

    credit.apply_outcome(
        session,
        object_to("huaxin", "企业称特种作业人员持证上岗，仅一名新员工培训记录缺失"),
        "correct",
        actor="deputy",
        corrections={
            "facts": "举报新员工未经安全培训即上岗作业，经核查部分属实："
            "一名新员工三级安全教育记录缺失；特种作业人员均持证上岗。",
            "doc_no": "魏应急核〔2026〕10号",
        },
        reason="经核查，原记录失信事实表述与核查结论不一致，予以更正",
        today=today,
    )
    credit.apply_outcome(
        session,
        object_to("dingsheng", "该裁定系非诉执行，企业已主动履行，不属严重失信"),
        "correct",
        actor="deputy",
        corrections={"severity": "general"},
        reason="经法制审核，失信程度认定有误，更正为一般",
        today=today,
    )
    credit.apply_outcome(
        session,
        object_to("xincheng", "处罚决定已被行政复议决定撤销"),
        "revoke",
        actor="deputy",
        reason="许昌市魏都区人民政府行政复议决定撤销原处罚决定，撤销该信用记录",
    )
    credit.apply_outcome(
        session,
        object_to("huifeng", "企业认为处罚过重"),
        "maintain",
        actor="deputy",
        reason="经核查，原记录事实清楚、程序合法，维持原记录",
    )


def _repairs(session: Session, ids: dict[str, int], today: date) -> None:
    credit.repair(
        session,
        ids["hongda"],
        actor="director",
        reason="已缴清罚款、完成停产整顿并通过复查，提交信用承诺书，同意信用修复",
        today=today,
    )
    credit.repair(
        session,
        ids["zhou"],
        actor="chief",
        reason="处分期满，本人提交信用承诺书，同意信用修复",
        today=today,
    )
