"""Man pages and the bash completion, generated from the usage texts.

    python3 -m encpipe.docgen        (from a checkout: rewrites scripts/man/ and scripts/completion/)

encpipe(1) and the completion come from encpipe/usage.py; each script's page
from what `scripts/NAME --help` prints. The files are kept in the repository,
so that the package installs them (setup.cfg data_files), and a test fails
when they differ from what this module makes: they cannot drift.
"""

import configparser
import re
import subprocess
import sys
from pathlib import Path

from . import __version__
from .usage import COMMANDS, USAGE, _sections, option_lines, options_of, summary, takes_argument

REPO = Path(__file__).resolve().parent.parent


def installed_scripts(setup_cfg=REPO / "setup.cfg"):
    """The script names setup.cfg installs: its shell scripts, then its console scripts
    but encpipe (encpipe-list and the other Python scripts)."""
    config = configparser.ConfigParser()
    config.read(setup_cfg)
    consoles = [line.split("=")[0].strip() for line in config["options.entry_points"]["console_scripts"].splitlines()]
    return [Path(line).name for line in config["options"]["scripts"].split() if line] + \
        [name for name in consoles if name and name != "encpipe"]


def _roff(text):
    """Plain text as roff: backslashes, leading dots and quotes, and hyphens escaped."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.splitlines())


def _header(name, description):
    return (f'.TH {name.upper()} 1 "" "encpipe {__version__}" "User Commands"\n'
            f".SH NAME\n{_roff(name)} \\- {_roff(description)}\n")


def _preformatted(text):
    return ".nf\n" + _roff(text.rstrip("\n")) + "\n.fi\n"


ENVIRONMENT = [
    ("ENCPIPE_KEY", "A raw key (64 hex digits), used when no key option is given."),
    ("ENCPIPE_PASSPHRASE", "A passphrase, used when no key option is given (after ENCPIPE_KEY)."),
    ("ENCPIPE_SIGNER", "Verify keys (encpipesign1...), separated by white space, as --signer when neither "
                       "--signer nor --signer-file is given: "
                       "open, inspect --verify and rewrap refuse a file none of them signed."),
    ("ENCPIPE_CIPHER", "pycryptodome or cryptography: the AES-GCM library to use (default: cryptography "
                       "when it can be imported, else pycryptodome); encpipe --version names it."),
    ("ENCPIPE_SCRYPT_BUDGET", "The scrypt work all passphrase attempts on one file may take together, "
                              "N*r*p summed (default 16777216)."),
    ("ENCPIPE_COMMAND_TIMEOUT", "Seconds --key-command and --passphrase-command may take (default 60)."),
]


def encpipe_page():
    """encpipe(1): synopsis, each command with its options, the options, exit status."""
    sections = _sections()
    page = _header("encpipe", USAGE.splitlines()[0].split(": ", 1)[1].rstrip("."))
    page += ".SH SYNOPSIS\n" + _preformatted(sections["Usage"])
    page += ".SH COMMANDS\n"
    for command in COMMANDS:
        options = ", ".join(sorted(options_of(command) - {"-h", "--help"}, key=lambda o: o.lstrip("-")))
        page += f".SS {command}\n{_roff(summary(command))}\n"
        page += f".PP\n{_roff('Options: ' + options + '.')}\n" if options else ""
    page += ".SH OPTIONS\n"
    for names, line in option_lines():
        head, _, text = line.strip().partition("  ")
        page += f".TP\n.B {_roff(head)}\n{_roff(text.strip())}\n"
    page += ".SH ENVIRONMENT\n" + "".join(f".TP\n.B {name}\n{_roff(text)}\n" for name, text in ENVIRONMENT)
    page += ".SH EXIT STATUS\n" + _roff(" ".join(sections["Exit status"].split())) + "\n"
    page += ".SH SEE ALSO\n" + ", ".join(f"\\fB{_roff(s)}\\fR(1)" for s in installed_scripts()) + "\n"
    return page


def script_help(name, scripts_dir=REPO / "scripts"):
    done = subprocess.run([str(scripts_dir / name), "--help"], capture_output=True, text=True, check=True,
                          env={"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(REPO)})
    return done.stdout


def script_page(name, help_text):
    """A script's page: its own first sentence as the NAME line, its help as the description."""
    paragraphs = [p for p in help_text.split("\n\n") if p.strip() and not p.lstrip().lower().startswith("usage")]
    first = " ".join(paragraphs[0].split()) if paragraphs else name
    first = re.sub(rf"^{re.escape(name)}: ", "", first)
    description = SHORT.get(name) or re.split(r"[.;:](?:\s|$)", first, maxsplit=1)[0]
    description = description[:1].lower() + description[1:] if description[1:2].islower() else description
    return _header(name, description) + ".SH DESCRIPTION\n" + _preformatted(help_text) + \
        ".SH SEE ALSO\n\\fBencpipe\\fR(1)\n"


SHORT = {"encpipe-backup": "dump one PostgreSQL database, sealed as by encpipe seal, into a backup directory "
                            "and/or an rclone remote, with its cluster's globals"}  # its first sentence is a page


def completion():
    """A bash completion for encpipe: the commands, then each command's options;
    after an option that takes a value, file names (or nothing, for numbers)."""
    commands = [c for c in COMMANDS]
    every = sorted({o for c in commands for o in options_of(c)})
    valued = [o for o in every if takes_argument(o)]
    files = [o for o in valued
             if any(o in names and re.search(r" (FILE|DIR)\b", line) for names, line in option_lines())]
    cases = "".join(
        f"    {c}) options=\"{' '.join(sorted(options_of(c)))}\" ;;\n" for c in commands if c != "help")
    return f"""# bash completion for encpipe; generated from its usage text by python3 -m encpipe.docgen
_encpipe() {{
  local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
  local commands="{' '.join(commands)}" options=""
  COMPREPLY=()
  if ((COMP_CWORD == 1)); then
    mapfile -t COMPREPLY < <(compgen -W "${{commands}} --help --version" -- "${{cur}}")
    return 0
  fi
  case "${{prev}}" in
    {'|'.join(files)}) mapfile -t COMPREPLY < <(compgen -f -- "${{cur}}"); return 0 ;;
    {'|'.join(o for o in valued if o not in files)}) return 0 ;;
  esac
  case "${{COMP_WORDS[1]}}" in
{cases}    help) mapfile -t COMPREPLY < <(compgen -W "${{commands}}" -- "${{cur}}"); return 0 ;;
    *) return 0 ;;
  esac
  if [[ "${{cur}}" == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "${{options}}" -- "${{cur}}")
  else
    mapfile -t COMPREPLY < <(compgen -f -- "${{cur}}")
  fi
}}
complete -o filenames -F _encpipe encpipe
"""


def generated():
    """{path relative to the repository: content} for every generated file."""
    files = {"scripts/man/encpipe.1": encpipe_page(), "scripts/completion/encpipe": completion()}
    for name in installed_scripts():
        files[f"scripts/man/{name}.1"] = script_page(name, script_help(name))
    return files


def main():
    for relative, content in generated().items():
        path = REPO / relative
        path.parent.mkdir(exist_ok=True)
        path.write_text(content)
        print(relative)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
