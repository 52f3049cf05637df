"""Typed helpers, as a gymnasium-style package writes them: TypeVars and Generic classes."""

from typing import Generic, NewType, TypeVar

ObsType = TypeVar("ObsType")
ActType = TypeVar("ActType")
T_co = TypeVar("T_co", covariant=True)
Temperature = NewType("Temperature", float)  # pickles as this very global: lent


class Space(Generic[T_co]):
    def __init__(self, shape):
        self.shape = shape

    def __repr__(self):
        return f"Space{self.shape}"


class Env(Generic[ObsType, ActType]):
    observation_space: Space = Space((4,))
    action_space: Space = Space((2,))

    def obs_dim(self):
        return self.observation_space.shape[0]
