"""What a principal may create or change: object ownership and queue access.

``admit_apply`` checks an apply request before the control plane sees it: kinds other than
those users own need ``operator``; an existing object may be changed only by its owner,
operators and admins; a job (or any object whose ``spec.queue`` names a queue) may be
submitted only to a queue whose ``spec.access`` lets the caller in (no ``access``: everyone).
It returns the manifests with ``metadata.owner`` set on kinds users own: the caller for
new objects, the recorded owner for existing ones. Reads the store; must not import api.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from phalanx import kinds
from phalanx.auth.errors import AccessDeniedError
from phalanx.auth.policy import USER_KINDS
from phalanx.auth.roles import Principal
from phalanx.store import Store

OWNER_KEY = "owner"


def _mapping(value: object) -> Mapping[str, object]:
    # ``type() is dict`` first: an ABC's isinstance costs more, and runs for every manifest.
    return value if type(value) is dict or isinstance(value, Mapping) else {}


def recorded_owner(manifest: Mapping[str, object]) -> str:
    """The ``metadata.owner`` of a stored manifest ("" when none: written before users)."""
    owner = _mapping(manifest.get("metadata")).get(OWNER_KEY)
    return owner if isinstance(owner, str) else ""


def stored_manifest(store: Store, kind: str, name: str) -> Mapping[str, object] | None:
    """The stored manifest of the object, None when there is none."""
    if kind == "Job":
        job = store.get_job(name)
        return job.manifest if job is not None else None
    record = store.get_object(kind, name)
    return record.manifest if record is not None else None


def kind_name(text: str) -> str | None:
    """The kind a name such as ``jobs``, ``job`` or ``q`` stands for; None when none does."""
    try:
        return kinds.lookup(text).name
    except kinds.UnknownKindError:
        return None


def check_owner(store: Store, principal: Principal, kind: str, name: str, action: str) -> None:
    """Raise AccessDeniedError unless ``principal`` may ``action`` the object as its owner.
    Objects of kinds users do not own need operator; a missing object passes (the route
    answers 404)."""
    if principal.is_privileged:
        return
    if kind not in USER_KINDS:
        raise AccessDeniedError(
            f"{action} a {kind} needs the operator role; {principal.name} is a "
            f"{principal.role.label}"
        )
    manifest = stored_manifest(store, kind, name)
    if manifest is None:
        return
    owner = recorded_owner(manifest)
    if not principal.owns(owner):
        raise AccessDeniedError(
            f"{kind} {name} belongs to {owner or 'no user (created before users existed)'}; "
            f"only its owner, operators and admins may {action} it, not {principal.name}"
        )


def queue_access(manifest: Mapping[str, object]) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """(users, groups) of a stored queue's ``spec.access``; None when it has none (anyone
    may submit)."""
    access = _mapping(manifest.get("spec")).get("access")
    if not isinstance(access, Mapping):
        return None
    users, groups = access.get("users", ()), access.get("groups", ())
    return (
        tuple(str(u) for u in users) if isinstance(users, Sequence) else (),
        tuple(str(g) for g in groups) if isinstance(groups, Sequence) else (),
    )


def check_queue_access(
    store: Store,
    principal: Principal,
    queue: str,
    known: dict[str, Mapping[str, object] | None] | None = None,
) -> None:
    """Raise AccessDeniedError, naming the queue and who may submit, unless ``principal`` may
    submit to ``queue``. Operators and admins may submit anywhere; a queue that does not
    exist (yet) or has no ``spec.access`` takes anyone's jobs. ``known`` remembers the queues
    read, by name, across the calls of one request."""
    if principal.is_privileged:
        return
    if known is not None and queue in known:
        manifest = known[queue]
    else:
        record = store.get_object("Queue", queue)
        manifest = record.manifest if record is not None else None
        if known is not None:
            known[queue] = manifest
    access = queue_access(manifest) if manifest is not None else None
    if access is None:
        return
    users, groups = access
    if principal.name in users or principal.groups & set(groups):
        return
    allowed = [
        f"users {', '.join(users)}" if users else "",
        f"groups {', '.join(groups)}" if groups else "",
    ]
    who = " and ".join(a for a in allowed if a) or "operators and admins only"
    mine = f" (groups {', '.join(sorted(principal.groups))})" if principal.groups else ""
    raise AccessDeniedError(
        f"queue {queue} accepts jobs from {who}; {principal.name}{mine} may not submit to it: "
        f"submit to another queue, or ask an operator to add you to spec.access of queue {queue}"
    )


def admit_apply(
    store: Store,
    principal: Principal,
    manifests: Sequence[Mapping[str, object]],
    stored_jobs: Mapping[str, Mapping[str, object]] | None = None,
) -> list[Mapping[str, object]]:
    """The manifests with ``metadata.owner`` set, after checking that ``principal`` may
    create or change each (kind, ownership, queue access). Raises AccessDeniedError naming the
    first refused object. Malformed manifests pass unchanged for the control plane to
    reject with its field paths. ``stored_jobs``: the stored manifests of (at least) the
    jobs ``manifests`` name, by name, when the caller has read them (``stored_jobs``) for
    several requests at once; by default they are read here."""
    jobs = stored_jobs if stored_jobs is not None else _stored_jobs(store, manifests)
    queues: dict[str, Mapping[str, object] | None] = {}
    out: list[Mapping[str, object]] = []
    for manifest in manifests:
        metadata = _mapping(manifest.get("metadata"))
        kind_text, name = manifest.get("kind"), metadata.get("name")
        kind = kind_name(kind_text) if isinstance(kind_text, str) else None
        if kind is None or not isinstance(name, str) or not name:
            out.append(manifest)
            continue
        if not principal.is_privileged and kind not in USER_KINDS:
            raise AccessDeniedError(
                f"applying a {kind} ({name}) needs the operator role; {principal.name} is a "
                f"{principal.role.label} and may apply {', '.join(sorted(USER_KINDS))}"
            )
        existing = jobs.get(name) if kind == "Job" else stored_manifest(store, kind, name)
        if existing is not None:
            owner = recorded_owner(existing)
            if not principal.owns(owner):
                raise AccessDeniedError(
                    f"{kind} {name} exists and belongs to "
                    f"{owner or 'no user (created before users existed)'}; choose another name"
                    f" (only its owner, operators and admins may change it)"
                )
        else:
            owner = principal.name
        queue = _mapping(manifest.get("spec")).get("queue")
        if isinstance(queue, str) and queue:
            check_queue_access(store, principal, queue, queues)
        new_metadata = {str(k): v for k, v in metadata.items() if k != OWNER_KEY}
        if owner and kind in USER_KINDS:  # queues and flavors are the operators', unowned
            new_metadata[OWNER_KEY] = owner
        out.append({**manifest, "metadata": new_metadata})
    return out


def stored_jobs(
    store: Store, manifests: Sequence[Mapping[str, object]]
) -> dict[str, Mapping[str, object]]:
    """As admit_apply reads them: the stored manifests of the jobs ``manifests`` name."""
    return _stored_jobs(store, manifests)


def _stored_jobs(
    store: Store, manifests: Sequence[Mapping[str, object]]
) -> dict[str, Mapping[str, object]]:
    """The stored manifests of the jobs ``manifests`` name, by name: read in a few queries
    for the whole request rather than one per job (``Store.job_manifests``)."""
    names = sorted(
        {
            name
            for m in manifests
            if isinstance(m.get("kind"), str)
            and kind_name(str(m.get("kind"))) == "Job"
            and isinstance(name := _mapping(m.get("metadata")).get("name"), str)
            and name
        }
    )
    return dict(store.job_manifests(names))
