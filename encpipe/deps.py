"""encpipe's Python dependencies: an import of one that fails is one line naming the
package to install (and exit 69), for encpipe and every script, not a traceback."""

from .errors import MissingDependency, ran_out, unexpected

# The distribution that provides each imported top-level module.
DISTRIBUTIONS = {"Crypto": "pycryptodome", "docopt": "docopt-ng", "cryptography": "cryptography"}
REQUIRED = ("Crypto", "docopt")


def unexpected_line(io, e):
    """An exception no code expected said in one line (errors.unexpected); its status."""
    message, status = unexpected(e)
    io.error(message)
    return status


def report_missing(io, e):
    """One line naming the package to install, and its exit status; an ImportError
    that is not one of encpipe's dependencies is a resource run out (a library that
    cannot be mapped) or a bug: its one line too (errors.unexpected), not a traceback."""
    error = missing_dependency(e)
    if error is None:
        return unexpected_line(io, e)
    io.error(str(error), hint=error.hint)
    return error.exit_code


def missing_dependency(error):
    """A MissingDependency naming the packages to install, when `error` is the
    import of one of encpipe's dependencies failing; else None."""
    module = (error.name or "").split(".")[0]
    if module not in DISTRIBUTIONS or ran_out(error):  # installed, but its library cannot be mapped: memory
        return None
    modules = [module] + [m for m in REQUIRED if m != module and not _importable(m)]
    packages = [DISTRIBUTIONS[m] for m in modules]
    plural = "s" if len(modules) > 1 else ""
    # found but failing (a name it lacks, a library it cannot load): what failed, to judge by
    why = "" if isinstance(error, ModuleNotFoundError) else f" ({error})"
    return MissingDependency(
        f"cannot import the Python module{plural} {', '.join(modules)}{why}: install the package{plural} "
        + ", ".join(packages),
        hint=f"python3 -m pip install {' '.join(packages)}"
        + (" (not docopt: 0.6 is another, older package)" if "docopt-ng" in packages else ""),
    )


def require_installed():
    """Import pycryptodome's top module (0.3 ms): an installation without it is said
    (69) as a command that reads a key starts, even where `cryptography` does this
    run's work, not in the middle of a run that needs it (a passphrase, a signature).
    (docopt, the other required package, every command line parses with.)"""
    from importlib import import_module

    import_module("Crypto")


def _importable(module):
    from importlib import import_module

    try:
        import_module(module)
    except ImportError:
        return False
    return True


def docopt_parser():
    """docopt-ng's parser; docopt 0.6, another package of the same module name, lacks default_help."""
    import docopt

    version = getattr(docopt, "__version__", "")
    if version and tuple(int(p) if p.isdigit() else 0 for p in version.split(".")[:2]) < (0, 7):
        raise MissingDependency(
            f"the installed docopt {version} is the old package; encpipe needs docopt-ng",
            hint="python3 -m pip uninstall docopt && python3 -m pip install docopt-ng",
        )
    return docopt.docopt, docopt.DocoptExit
