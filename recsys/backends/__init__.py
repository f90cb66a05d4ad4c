"""Where the recipes run: the local engine or Amazon Personalize, behind one protocol
(:class:`recsys.mixer.CandidateSource`)."""

from recsys.backends.local import InNetworkSource, LocalRecipeSource
from recsys.backends.personalize import (
    PersonalizeConfig,
    PersonalizeEventSink,
    PersonalizeNotConfigured,
    PersonalizeRecipeSource,
    make_clients,
)

__all__ = [
    "InNetworkSource",
    "LocalRecipeSource",
    "PersonalizeConfig",
    "PersonalizeEventSink",
    "PersonalizeNotConfigured",
    "PersonalizeRecipeSource",
    "make_clients",
]
