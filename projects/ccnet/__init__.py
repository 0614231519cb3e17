"""CCNet (criss-cross attention) for Detectron2.

``import ccnet`` imports nothing else: each part is imported on its own.

* :mod:`ccnet.layers` is plain PyTorch (no Detectron2), and so are :mod:`ccnet.visualization`
  and :mod:`ccnet.utils.files`.
* The parts that build on Detectron2 (:mod:`ccnet.config`, :mod:`ccnet.data`,
  :mod:`ccnet.modeling`, :mod:`ccnet.engine`, :mod:`ccnet.export`, :mod:`ccnet.inference`)
  first make the installed Detectron2 work with today's libraries (:func:`ccnet.compat.apply`).
* Importing :mod:`ccnet.modeling` registers the project's backbones, heads and
  meta-architectures, :mod:`ccnet.data` its datasets and dataset mappers, with Detectron2's
  registries; :mod:`ccnet.config` (:func:`add_ccnet_config`) imports both, so a config that
  has the project's keys can name all of them.
"""

__all__ = ["add_ccnet_config"]


def __getattr__(name):
    # ``from ccnet import add_ccnet_config`` imports ccnet.config (and so registers) on first use.
    if name == "add_ccnet_config":
        from .config import add_ccnet_config

        return add_ccnet_config
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
