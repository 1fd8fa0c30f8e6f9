"""The model registry at any URL: a folder path, ``file://``, ``memory://``, ``s3://``,
``gs://``, ``az://`` (credentials from the environment, as object_store reads them). The same
store the Rust crates and the ``registry`` example use: versions with their files, metrics,
params and tags; aliases moved by compare-and-swap; the reference profile beside each model.

>>> import numpy as np, tempfile
>>> from mlops.registry import Registry
>>> from mlops.train import fit
>>> x = np.random.default_rng(0).normal(size=(500, 3)); y = (x[:, 0] > 0).astype(int)
>>> registry = Registry(tempfile.mkdtemp())
>>> v = registry.register("demo", fit(x, y, hidden=(8,), epochs=5), metrics={"roc_auc": 0.99})
>>> registry.set_alias("demo", "production", v)
>>> registry.alias("demo", "production") == v
True
"""

import json

from . import _native
from ._arrays import as_count
from .drift import ReferenceProfile
from .train import Model

__all__ = ["Registry"]


class Registry:
    """A registry handle (see the module docs). Every call releases the GIL."""

    def __init__(self, url):
        self._r = _native.Registry(str(url))

    def register(self, name, model, *, profile=None, metrics=None, params=None, tags=None, description=None):
        """Registers ``model`` (a :class:`mlops.train.Model`) and its reference ``profile`` (a
        :class:`mlops.drift.ReferenceProfile`) as the next version of ``name``; returns the
        version number."""
        return self._r.register(
            name,
            model._m,
            None if profile is None else profile._p,
            {str(k): float(v) for k, v in (metrics or {}).items()},
            {str(k): str(v) for k, v in (params or {}).items()},
            {str(k): str(v) for k, v in (tags or {}).items()},
            description,
        )

    def set_alias(self, name, alias, version, *, expected=None, why="set from Python"):
        """Points ``alias`` at ``version`` if it points at ``expected`` now (``None``: unset);
        ``ValueError`` when someone moved it first."""
        self._r.set_alias(name, alias, as_count("version", version, 0, 2**64 - 1), expected, why)

    def alias(self, name, alias):
        """The version ``alias`` points at, or ``None``."""
        return self._r.alias(name, alias)

    def load(self, name, reference="@production", non_finite="nan"):
        """A version (``3`` or ``"@production"``) as a :class:`mlops.train.Model`."""
        return Model(self._r.load(name, str(reference), non_finite))

    def profile(self, name, reference="@production"):
        """The reference profile stored with a version, or ``None``."""
        p = self._r.profile(name, str(reference))
        return None if p is None else ReferenceProfile(p)

    def versions(self, name):
        """Every version of ``name`` (record, tombstone, aliases) as dicts."""
        return json.loads(self._r.versions(name))

    def versions_page(self, name, after=0, limit=100):
        """Up to ``limit`` (1 to 1000) versions of ``name`` numbered after ``after``, as a dict:
        ``versions`` (as :meth:`versions` gives them), ``unreadable`` (records that could not
        be read, with the reason), ``next_after`` (the next page's ``after``; ``None`` on the
        last page) and ``last_version``. A page costs the same at any number of versions."""
        after, limit = int(after), int(limit)
        if after < 0 or limit < 0:
            raise ValueError(f"versions_page(after={after}, limit={limit}): after is a version number (>= 0), "
                             f"limit 1 to 1000")
        return json.loads(self._r.versions_page(name, after, limit))
