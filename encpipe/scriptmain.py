"""The main() of a script's module (cli.run_script): a MODULE that cannot be
found, has no main() or is no module name at all is NotAScript, one line and
exit 70, not a traceback. The names come from encpipe's own scripts, so such a
name is encpipe's bug, or a broken installation."""

from importlib import import_module

from .errors import EncpipeError


class NotAScript(EncpipeError):
    """MODULE is not a module with a main() to run (exit 70, internal error)."""


def main_of(module):
    """`module`'s main; an ImportError of one of its own imports (a missing
    dependency) is raised as it is."""
    if not all(part.isidentifier() for part in module.split(".")):
        raise NotAScript(f"cannot run {module!r}: not a module name")
    try:
        main = getattr(import_module(module), "main", None)
    except ModuleNotFoundError as e:
        if not f"{module}.".startswith(f"{e.name}."):  # a module it imports
            raise
        raise NotAScript(f"cannot run {module!r}: no such module") from None
    if not callable(main):
        raise NotAScript(f"cannot run {module!r}: it has no main()")
    return main
