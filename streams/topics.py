"""Topic names and configs; ``cxpulse topics create``.

Every topic is created by us with explicit ``cleanup.policy`` and ``retention.ms``: Tansu does not
invent configs (and would auto-create a topic on first use without any), and a real Kafka's broker
defaults are not what a changelog or a compacted output needs. All topics share
``settings.partitions``: stage-1 tables are co-partitioned with their input topics, and the
partials topic is keyed like the merge table.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from streams.settings import Settings

log = logging.getLogger(__name__)

# Inputs (keyed by customer_id).
SURVEY_RESPONSES = "cx.survey-responses"
SUPPORT_INTERACTIONS = "cx.support-interactions"
CANCELLATIONS = "cx.cancellations"
CUSTOMERS = "cx.customers"
INPUTS = (SURVEY_RESPONSES, SUPPORT_INTERACTIONS, CANCELLATIONS, CUSTOMERS)

# Outputs.
SCORES = "cx.scores"
ALERTS = "cx.alerts"
DEAD_LETTER = "cx.dead-letter"
FOLLOWUPS = "cx.followups"
OUTPUTS = (SCORES, ALERTS, DEAD_LETTER, FOLLOWUPS)

# Faust table names; the changelog of table T is "{app_id}-{T}-changelog" (Faust's naming).
FOLD_TABLES = {
    SURVEY_RESPONSES: "fold-surveys",
    SUPPORT_INTERACTIONS: "fold-support",
    CANCELLATIONS: "fold-cancellations",
    CUSTOMERS: "fold-customers",
}
MERGE_TABLE = "merge"
TABLES = (*FOLD_TABLES.values(), MERGE_TABLE)

DAY_MS = 86_400_000
INPUT_SLACK_MS = 7 * DAY_MS  # inputs outlive the longest window by a week, for replays
OUTPUT_RETENTION_MS = 30 * DAY_MS
PARTIALS_RETENTION_MS = 7 * DAY_MS
# A dead letter carries the original bytes (SPEC §5), base64 when not UTF-8: 4/3 of an input
# record of up to Kafka's default 1 MB, plus the other fields. The producer's request limit
# and the dead-letter topic's max.message.bytes are raised to this.
MAX_RECORD_BYTES = 4 * 1024 * 1024
FOREVER = -1  # Tansu accepts retention.ms=-1 (checked by hand), as Kafka does

_POLICIES = {"delete", "compact", "compact,delete", "delete,compact"}


def partials_topic(settings: Settings) -> str:
    """Stage-2 input: per (family, dimension, member) snapshots of stage-1 partitions."""
    return f"{settings.app_id}-partials"


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{settings.app_id}-{table}-changelog"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication: int = 1
    configs: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Tansu stores any config verbatim without validating it, so a typo would only surface
        # on a real Kafka: check the two configs every topic must carry here.
        if self.partitions < 1 or self.replication < 1:
            raise ValueError(f"{self.name}: partitions and replication must be >= 1")
        policy = self.configs.get("cleanup.policy")
        if policy not in _POLICIES:
            raise ValueError(f"{self.name}: bad or missing cleanup.policy {policy!r}")
        retention = self.configs.get("retention.ms", "")
        if not retention.lstrip("-").isdigit() or int(retention) < FOREVER:
            raise ValueError(f"{self.name}: bad or missing retention.ms {retention!r}")

    @property
    def compacted(self) -> bool:
        return "compact" in self.configs["cleanup.policy"]


def _configs(policy: str, retention_ms: int) -> dict[str, str]:
    return {"cleanup.policy": policy, "retention.ms": str(retention_ms)}


def topic_specs(settings: Settings, *, replication: int = 1) -> list[TopicSpec]:
    """Every topic the service reads or writes, with its configs."""
    parts = settings.partitions
    input_retention = settings.retention_s * 1000 + INPUT_SLACK_MS

    def spec(name: str, policy: str, retention_ms: int) -> TopicSpec:
        return TopicSpec(name, parts, replication, _configs(policy, retention_ms))

    specs = [
        spec(SURVEY_RESPONSES, "delete", input_retention),
        spec(SUPPORT_INTERACTIONS, "delete", input_retention),
        spec(CANCELLATIONS, "delete", input_retention),
        # The customer base is state (latest record per customer), not history.
        spec(CUSTOMERS, "compact", FOREVER),
        spec(SCORES, "compact", FOREVER),
        spec(ALERTS, "delete", OUTPUT_RETENTION_MS),
        TopicSpec(
            DEAD_LETTER,
            parts,
            replication,
            {**_configs("delete", OUTPUT_RETENTION_MS), "max.message.bytes": str(MAX_RECORD_BYTES)},
        ),
        spec(FOLLOWUPS, "delete", OUTPUT_RETENTION_MS),
        spec(partials_topic(settings), "delete", PARTIALS_RETENTION_MS),
    ]
    # Changelogs are compacted state: their size is bounded by live keys (stale buckets are
    # deleted with tombstones by the tables), never by time.
    specs += [spec(changelog_topic(settings, t), "compact", FOREVER) for t in TABLES]
    return specs


async def create_topics(bootstrap: str, specs: Iterable[TopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; return the names created (idempotent)."""
    specs = list(specs)
    if not specs:
        return []
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15_000)
    try:
        await admin.start()
        response = await admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication, topic_configs=dict(s.configs))
                for s in specs
            ]
        )
        created: list[str] = []
        existing: list[str] = []
        for name, code, *rest in response.topic_errors:
            if code == 0:
                created.append(name)
            elif code == TopicAlreadyExistsError.errno:
                existing.append(name)
            else:
                raise for_code(code)(f"creating topic {name}: {rest}")
        if existing:
            await _check_partitions(admin, {s.name: s for s in specs if s.name in existing})
        return created
    finally:
        await admin.close()


async def _check_partitions(admin: AIOKafkaAdminClient, specs: dict[str, TopicSpec]) -> None:
    """Warn when an existing topic has another partition count (it breaks co-partitioning)."""
    for meta in await admin.describe_topics(list(specs)):
        want = specs[meta["topic"]].partitions
        have = len(meta["partitions"])
        if have != want:
            log.warning(
                "topic %s exists with %d partitions, expected %d: recreate it (a topic"
                " auto-created by a producer before `topics create` gets the broker default)",
                meta["topic"],
                have,
                want,
            )
