"""Kind Secret: named values for pod environments (``env[].valueFrom.secretKeyRef``).

The manifest parsed here is the plain one (``spec.data`` in base64, ``spec.stringData``);
the control plane encrypts it before it is stored (controllers/secrets.py), and every read
(get, describe, the API) shows the keys with their sizes, never the values.
"""

from __future__ import annotations

from collections.abc import Mapping

from phalanx.kinds.registry import Kind, register
from phalanx.model.secrets import SecretSpec, parse_secret, secret_spec_manifest


def _spec(obj: SecretSpec) -> Mapping[str, object]:
    return secret_spec_manifest(obj)


SECRET = register(
    Kind(
        name="Secret",
        plural="secrets",
        short_names=("secret",),
        description="values for pod env (valueFrom.secretKeyRef), encrypted at rest, masked",
        parse=parse_secret,
        spec_manifest=_spec,
    )
)
