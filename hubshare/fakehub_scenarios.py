"""Accounts for the fake Hub, and a seeded long-tail Hub to serve with them.

The real Hub has hundreds of thousands of namespaces, almost all small and absent from the
reviewed mapping; the bundled sample is only its top. :func:`long_tail` builds a Hub with that
shape, the same for the same arguments and seed:

* a head of reviewed namespaces (the names given, e.g. the ``org`` column of
  ``data/org_country.csv``) that mostly outrank the rest, each with an account (an organisation,
  every fourth one a user);
* thousands of unreviewed user accounts and as many unreviewed organisations (at the default
  20,000 models: 4,500 users and 3,500 organisations, so at least 3,000 of each);
* some *vanished* namespaces: models listed under them, no account (both overview endpoints
  answer 404, as for a deleted or renamed account);
* downloads per namespace ``floor(C / rank ** 1.3)`` over a shuffled ranking, so they are
  heavy-tailed and strictly ranked down to about rank 9,000; a namespace's downloads are split
  over its models (heavier namespaces own more models), with ``base_model`` finetune tags and
  GGUF quantized copies of reviewed namespaces' models in the tail.

This module is core: it imports only core hubshare modules, so the fake Hub, tests and benchmarks
can all use it. Every model is public (so the listing an anonymous crawl sees is the whole Hub).
"""

from __future__ import annotations

import csv
import gzip
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, get_args

import orjson

from hubshare.provenance import synthetic_object_id

__all__ = [
    "Account",
    "AccountKind",
    "LongTail",
    "load_accounts",
    "long_tail",
    "namespaces_from_mapping",
    "write_accounts",
    "with_unstorable_models",
    "write_models",
]

AccountKind = Literal["user", "org"]
_KINDS: Final[frozenset[str]] = frozenset(get_args(AccountKind))
Model = dict[str, Any]

PLACEHOLDER_CREATED_AT: Final[str] = "2022-03-02T23:29:04.000Z"
_DOWNLOADS_SCALE: Final[int] = 1_000_000_000
_DOWNLOADS_EXPONENT: Final[float] = 1.3
_EPOCH: Final[datetime] = datetime(2022, 6, 1, tzinfo=UTC)
_SPAN_DAYS: Final[int] = 1640  # up to late 2026


@dataclass(frozen=True, slots=True)
class Account:
    """A Hub account as the overview endpoints describe it (the Hub has no country field).

    ``name`` is the canonical spelling; lookups ignore case. ``plan`` is an organisation's plan
    (``"team"``, ``"enterprise"``) or ``"pro"`` for a PRO user. ``orgs`` (users only) names the
    organisations the user belongs to.
    """

    name: str
    kind: AccountKind
    fullname: str = ""
    verified: bool = False
    plan: str | None = None
    details: str | None = None
    num_followers: int = 0
    num_users: int = 0
    orgs: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name:
            raise ValueError(f"account name must be a non-empty namespace, got {self.name!r}")
        if self.kind not in _KINDS:
            raise ValueError(f"account kind must be one of {sorted(_KINDS)}, got {self.kind!r}")
        if self.kind == "org" and self.orgs:
            raise ValueError(f"organisation {self.name!r} cannot belong to organisations")
        if self.num_followers < 0 or self.num_users < 0:
            raise ValueError("account counts must be >= 0")

    def to_json(self) -> dict[str, Any]:
        obj = asdict(self)
        obj["orgs"] = list(self.orgs)
        return obj

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Account:
        known = {f.name for f in fields(cls)}
        unknown = set(obj) - known
        if unknown:
            raise ValueError(f"unknown account keys {sorted(unknown)}")
        values = dict(obj)
        values["orgs"] = tuple(values.get("orgs") or ())
        return cls(**values)


def load_accounts(path: str | Path) -> list[Account]:
    """Accounts from a JSON Lines file (optionally gzipped), one :meth:`Account.to_json` a line."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    accounts: list[Account] = []
    for number, line in enumerate(raw.splitlines(), start=1):
        if not line.strip():
            continue
        obj = orjson.loads(line)
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: line {number} is not a JSON object")
        try:
            accounts.append(Account.from_json(obj))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{path}: line {number}: {exc}") from exc
    return accounts


def write_accounts(accounts: Iterable[Account], path: str | Path) -> Path:
    """Write accounts as JSON Lines (gzipped when the name ends in ``.gz``)."""
    body = b"".join(orjson.dumps(a.to_json()) + b"\n" for a in accounts)
    return _write(Path(path), body)


def write_models(models: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Write model objects as JSON Lines (gzipped when the name ends in ``.gz``), readable by
    ``hubshare.fakehub.load_models``."""
    body = b"".join(orjson.dumps(dict(m)) + b"\n" for m in models)
    return _write(Path(path), body)


#: Models whose values no warehouse column holds as declared, by what is odd about each: a
#: `gated` value longer than its column, an id over 256 characters, a NUL in a text field.
UNSTORABLE_MODELS: Final[dict[str, Model]] = {
    "gated-too-long": {"gated": "manual-approval-by-the-authors"},
    "id-over-256": {"id": "hobbyist/" + "x" * 300},
    "nul-in-pipeline-tag": {"pipeline_tag": "text\x00generation"},
}


def with_unstorable_models(
    models: Sequence[Mapping[str, Any]], uploader: str = "hobbyist"
) -> list[Model]:
    """`models` and one more public model per entry of `UNSTORABLE_MODELS`, uploaded by
    `uploader` with 7 downloads each (ids `<uploader>/unstorable-<name>` unless the entry sets
    one): a Hub with a few odd models a crawl must carry to the warehouse without failing."""
    odd = []
    for name, fields_ in UNSTORABLE_MODELS.items():
        model_id = f"{uploader}/unstorable-{name}"
        model = {
            "_id": synthetic_object_id(model_id),
            "id": model_id,
            "author": uploader,
            "downloads": 7,
            "downloadsAllTime": 70,
            "likes": 0,
            "createdAt": PLACEHOLDER_CREATED_AT,
            "lastModified": PLACEHOLDER_CREATED_AT,
            "pipeline_tag": "text-generation",
            "library_name": "transformers",
            "tags": ["transformers"],
            "gated": False,
            "private": False,
        }
        odd.append(model | fields_)
    return [dict(m) for m in models] + odd


def _write(path: Path, body: bytes) -> Path:
    if path.name.endswith(".gz"):
        body = gzip.compress(body, mtime=0)  # mtime 0: the same scenario gives the same bytes
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return path


def namespaces_from_mapping(path: str | Path) -> list[str]:
    """The reviewed namespaces (column ``org``) of a mapping CSV such as
    ``data/org_country.csv``, in file order."""
    with Path(path).open(newline="", encoding="utf-8") as handle:
        return [row["org"] for row in csv.DictReader(handle) if row.get("org")]


@dataclass(frozen=True, slots=True)
class LongTail:
    """A generated Hub: its models (wire shape) and accounts, and which namespace is which."""

    seed: int
    models: list[Model]
    accounts: list[Account]
    reviewed: tuple[str, ...]  # mapping namespaces used, as given
    users: tuple[str, ...]  # unreviewed user accounts
    orgs: tuple[str, ...]  # unreviewed organisation accounts
    vanished: tuple[str, ...]  # namespaces with models and no account

    def downloads_by_namespace(self) -> dict[str, int]:
        """Sum of ``downloads`` per namespace (the ``author``), for hand-computed shares."""
        totals: dict[str, int] = {}
        for model in self.models:
            author = str(model["author"])
            totals[author] = totals.get(author, 0) + int(model["downloads"])
        return totals


_SYLLABLES: Final[tuple[str, ...]] = (
    "ka", "ri", "mo", "ta", "ne", "lu", "vi", "so", "ze", "da",
    "no", "mi", "ra", "te", "po", "li", "xa", "be", "qu", "fe",
)  # fmt: skip
_ORG_SUFFIXES: Final[tuple[str, ...]] = ("labs", "ai", "research", "nlp", "group", "tech")
_FIRST: Final[tuple[str, ...]] = ("Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gita", "Hugo")
_LAST: Final[tuple[str, ...]] = ("Ito", "Jones", "Kaur", "Lopez", "Mensah", "Novak", "Oyelaran")
_ARCHS: Final[tuple[str, ...]] = ("llama", "qwen", "mistral", "bert", "t5", "vit", "whisper")
_SIZES: Final[tuple[str, ...]] = ("0.5b", "1b", "3b", "7b", "8b", "13b", "base", "large")
_TASKS: Final[tuple[tuple[str, str], ...]] = (
    ("text-generation", "transformers"),
    ("text-classification", "transformers"),
    ("token-classification", "transformers"),
    ("automatic-speech-recognition", "transformers"),
    ("image-classification", "timm"),
    ("text-to-image", "diffusers"),
    ("sentence-similarity", "sentence-transformers"),
)
_LICENSES: Final[tuple[str, ...]] = ("apache-2.0", "mit", "other", "cc-by-4.0", "llama3")


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(syllables))


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def long_tail(
    n_models: int = 20_000,
    *,
    seed: int = 0,
    mapping_namespaces: Sequence[str] = (),
    n_users: int | None = None,
    n_orgs: int | None = None,
    n_vanished: int | None = None,
    reserved_namespaces: Iterable[str] = (),
) -> LongTail:
    """A Hub of exactly ``n_models`` public models with a long tail of namespaces (see the module
    docstring). Defaults: ``n_users = 9/40``, ``n_orgs = 7/40`` and ``n_vanished = 1/400`` of
    ``n_models``; at most ``n_models // 10`` mapping namespaces (the first ones given) are used.
    No generated namespace equals one of ``reserved_namespaces`` ignoring case (e.g. those of
    models served beside these). The same arguments give the same models and accounts, to the
    byte."""
    if n_models < 1:
        raise ValueError("n_models must be >= 1")
    users_wanted = n_models * 9 // 40 if n_users is None else n_users
    orgs_wanted = n_models * 7 // 40 if n_orgs is None else n_orgs
    vanished_wanted = max(1, n_models // 400) if n_vanished is None else n_vanished
    if min(users_wanted, orgs_wanted, vanished_wanted) < 0:
        raise ValueError("namespace counts must be >= 0")
    rng = random.Random(seed)  # noqa: S311 (a reproducible scenario, not a secret)

    reviewed: list[str] = []
    taken: set[str] = set()
    for name in mapping_namespaces:
        if len(reviewed) >= n_models // 10:
            break
        if name and name.lower() not in taken:
            taken.add(name.lower())
            reviewed.append(name)
    taken.update(name.lower() for name in reserved_namespaces)

    def fresh(make: str) -> str:
        name = make
        while name.lower() in taken:  # never collide with a reviewed (or earlier) namespace
            name += "x"
        taken.add(name.lower())
        return name

    def cased(name: str, index: int) -> str:
        # Some canonical names are mixed-case, so case-insensitive lookups are exercised.
        return name.capitalize() if index % 5 == 0 else name

    users = [fresh(cased(f"{_word(rng, 3)}{i}", i)) for i in range(users_wanted)]
    orgs = [
        fresh(cased(f"{_word(rng, 2)}-{rng.choice(_ORG_SUFFIXES)}-{i}", i))
        for i in range(orgs_wanted)
    ]
    vanished = [fresh(f"gone-{_word(rng, 2)}-{i}") for i in range(vanished_wanted)]
    n_namespaces = len(reviewed) + len(users) + len(orgs) + len(vanished)
    if n_namespaces > n_models:
        raise ValueError(f"{n_namespaces} namespaces need at least as many models, not {n_models}")

    # Ranking: two reviewed namespaces then one unreviewed while reviewed ones last, then the
    # rest of the tail; reviewed ones so carry most downloads, the largest unreviewed stand out.
    head = list(reviewed)
    tail = users + orgs + vanished
    rng.shuffle(head)
    rng.shuffle(tail)
    ranking: list[str] = []
    for index, name in enumerate(head):
        ranking.append(name)
        if index % 2 == 1 and tail:
            ranking.append(tail.pop(0))
    ranking.extend(tail)
    totals = {
        name: int(_DOWNLOADS_SCALE / (rank**_DOWNLOADS_EXPONENT))
        for rank, name in enumerate(ranking, start=1)
    }

    # Every namespace owns one model; the rest go preferably to the heavy namespaces.
    model_counts = dict.fromkeys(ranking, 1)
    weights = [totals[name] ** 0.5 for name in ranking]
    for name in rng.choices(ranking, weights=weights, k=n_models - n_namespaces):
        model_counts[name] += 1

    reviewed_set = set(reviewed)
    models: list[Model] = []
    reviewed_ids: list[str] = []
    # Reviewed namespaces first, so tail models can name their models as base models.
    order = [n for n in ranking if n in reviewed_set] + [
        n for n in ranking if n not in reviewed_set
    ]
    for name in order:
        is_reviewed = name in reviewed_set
        count = model_counts[name]
        shares = sorted((rng.paretovariate(1.2) for _ in range(count)), reverse=True)
        total_share = sum(shares)
        downloads = [int(totals[name] * s / total_share) for s in shares]
        downloads[0] += totals[name] - sum(downloads)  # exact: the namespace total is the rank's
        for index, count_downloads in enumerate(downloads):
            model = _model(rng, name, index, count_downloads, is_reviewed, reviewed_ids)
            models.append(model)
            if is_reviewed:
                reviewed_ids.append(model["id"])

    accounts = _accounts(rng, reviewed, users, orgs)
    return LongTail(
        seed=seed,
        models=models,
        accounts=accounts,
        reviewed=tuple(reviewed),
        users=tuple(users),
        orgs=tuple(orgs),
        vanished=tuple(vanished),
    )


def _model(
    rng: random.Random,
    namespace: str,
    index: int,
    downloads: int,
    is_reviewed: bool,
    reviewed_ids: Sequence[str],
) -> Model:
    """One model object in the listing's wire shape (the keys of the ETL's ``expand``)."""
    pipeline_tag, library = rng.choice(_TASKS)
    arch, size = rng.choice(_ARCHS), rng.choice(_SIZES)
    name = f"{arch}-{size}-{_word(rng, 2)}-{index}"
    tags = [library, pipeline_tag, f"license:{rng.choice(_LICENSES)}", "region:us"]
    roll = rng.random()
    if not is_reviewed and reviewed_ids and roll < 0.12:
        # A GGUF quantized copy of a reviewed namespace's model, named after it.
        parent = rng.choice(reviewed_ids)
        stem = parent.split("/", 1)[1]
        name = f"{stem}-GGUF" if index == 0 else f"{stem}-{index}-GGUF"  # unique in namespace
        library = ""
        pipeline_tag = "text-generation"
        tags = ["gguf", pipeline_tag, f"base_model:{parent}", f"base_model:quantized:{parent}"]
    elif reviewed_ids and roll < 0.30:
        parent = rng.choice(reviewed_ids)
        if rng.random() < 0.2:
            parent = parent.lower()  # authors write base_model ids in any case
        tags += [f"base_model:{parent}", f"base_model:finetune:{parent}"]
    if rng.random() < 0.05:
        created_at = PLACEHOLDER_CREATED_AT  # the Hub's placeholder for old repos: many ties
        created = datetime(2022, 3, 2, 23, 29, 4, tzinfo=UTC)
    else:
        created = _EPOCH + timedelta(seconds=rng.randrange(_SPAN_DAYS * 86_400))
        created_at = _iso(created)
    modified = created + timedelta(seconds=rng.randrange(60 * 86_400))
    gated: bool | str = False
    if is_reviewed and rng.random() < 0.1:
        gated = rng.choice(("auto", "manual"))
    model_id = f"{namespace}/{name}"
    return {
        "_id": synthetic_object_id(model_id),
        "id": model_id,
        "author": namespace,
        "downloads": downloads,
        "downloadsAllTime": downloads * rng.randint(1, 30) + rng.randrange(1000),
        "likes": int(downloads**0.5 * rng.random()),
        "createdAt": created_at,
        "lastModified": _iso(modified),
        "tags": tags,
        "pipeline_tag": pipeline_tag,
        "library_name": library or None,
        "gated": gated,
        "private": False,
    }


def _accounts(
    rng: random.Random, reviewed: Sequence[str], users: Sequence[str], orgs: Sequence[str]
) -> list[Account]:
    accounts: list[Account] = []
    for index, name in enumerate(reviewed):
        if index % 4 == 3:
            accounts.append(Account(name=name, kind="user", fullname=name))
        else:
            accounts.append(
                Account(
                    name=name,
                    kind="org",
                    fullname=name,
                    verified=rng.random() < 0.5,
                    plan=rng.choice((None, None, "team", "enterprise")),
                    num_users=rng.randint(1, 200),
                    num_followers=rng.randint(0, 50_000),
                )
            )
    for name in orgs:
        accounts.append(
            Account(
                name=name,
                kind="org",
                fullname=name.replace("-", " ").title(),
                verified=rng.random() < 0.05,
                plan="team" if rng.random() < 0.03 else None,
                num_users=rng.randint(1, 30),
                num_followers=rng.randint(0, 500),
            )
        )
    for name in users:
        member_of = (rng.choice(orgs),) if orgs and rng.random() < 0.1 else ()
        accounts.append(
            Account(
                name=name,
                kind="user",
                fullname=f"{rng.choice(_FIRST)} {rng.choice(_LAST)}",
                plan="pro" if rng.random() < 0.05 else None,
                num_followers=rng.randint(0, 200),
                orgs=member_of,
            )
        )
    return accounts


#: How far before its last modification a synthetic creation date may fall.
_SYNTHETIC_AGE_DAYS = 3 * 365
_HUB_OPENED = datetime(2020, 1, 1, tzinfo=UTC)


def with_synthetic_history(
    models: Sequence[Mapping[str, Any]], day: date, start: date, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`models` (a sample without `createdAt` or `downloadsAllTime`) as they are on `day` and
    as they were on `start`, with SYNTHETIC counters: each model gets a seeded creation date on
    or before its `lastModified`, and is assumed downloaded evenly since then at the rate of its
    real 30-day `downloads` (so `downloadsAllTime` grows with its age). On `start` only the
    models created by then exist. The real `downloads` on `day` are kept as they are."""
    rng = random.Random(seed)  # noqa: S311 (a reproducible scenario, not a secret)
    at_day: list[dict[str, Any]] = []
    at_start: list[dict[str, Any]] = []
    day_end = datetime.combine(day, datetime.min.time(), UTC)
    start_end = datetime.combine(start, datetime.min.time(), UTC)
    for model in models:
        modified = str(model.get("lastModified") or "")
        latest = datetime.fromisoformat(modified) if modified else day_end
        created = max(
            _HUB_OPENED,
            min(latest, day_end) - timedelta(seconds=rng.randrange(_SYNTHETIC_AGE_DAYS * 86_400)),
        )
        downloads = int(model.get("downloads") or 0)

        def all_time(until: datetime, created: datetime = created, rate: int = downloads) -> int:
            return rate * max(0, (until - created).days) // 30

        at_day.append(
            dict(model)
            | {"createdAt": _iso(created), "downloadsAllTime": max(downloads, all_time(day_end))}
        )
        if created < start_end:
            before = all_time(start_end)
            at_start.append(
                dict(model)
                | {
                    "createdAt": _iso(created),
                    "downloads": min(downloads, before),
                    "downloadsAllTime": before,
                }
            )
    return at_day, at_start
