"""flowguard: consent-aware information-flow checking for co-produced public services."""

from flowguard.engine import Engine
from flowguard.errors import (
    Diagnostic,
    ExplanationError,
    FlowError,
    FlowguardError,
    InputError,
    PolicyError,
    RegistryError,
)
from flowguard.model import (
    Basis,
    CategoryDecision,
    Consent,
    Decision,
    Flow,
    Guardianship,
    Policy,
    Reason,
    ReasonCode,
    Remedy,
    Subject,
)
from flowguard.policy import load_policy
from flowguard.registry import InMemoryRegistry, Registry, load_registry

__version__ = "0.1.0"

__all__ = [
    "Basis",
    "CategoryDecision",
    "Consent",
    "Decision",
    "Diagnostic",
    "Engine",
    "ExplanationError",
    "Flow",
    "FlowError",
    "FlowguardError",
    "Guardianship",
    "InMemoryRegistry",
    "InputError",
    "Policy",
    "PolicyError",
    "Reason",
    "ReasonCode",
    "Registry",
    "RegistryError",
    "Remedy",
    "Subject",
    "__version__",
    "load_policy",
    "load_registry",
]
