"""Platform-neutral commands: specs and handlers, one module per audience."""

from commands import admin, member, moderation  # noqa: F401  (importing registers them)
from commands.registry import REGISTRY, CommandContext, Reply, dispatch

__all__ = ["REGISTRY", "CommandContext", "Reply", "dispatch"]
