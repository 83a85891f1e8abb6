"""CRIU: probing the installed binary, and (lazily) reading checkpoint images with pycriu."""

from toolkit.criu.probe import CriuStatus, criu_binary, probe_criu, pycriu_available

__all__ = ["CriuStatus", "criu_binary", "probe_criu", "pycriu_available"]
