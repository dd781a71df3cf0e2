"""The words of an option given to a child: --option=VALUE, one word.

The scripts hand values on to the programs they run: paths the user gave (a key
file, a signing key), key ids, verify keys, a database's name. Any of them may
start with a dash: a file may be named -h, --help or --. As a word of its own
after its option, a child may take such a value for an option of its own:
encpipe prints its usage for an -h or --help anywhere before --, and exits 0
(a caller would take the usage for the output it asked for); docopt ends the
options at --. One word, --option=VALUE, is that option's value whatever it
starts with, and the child names the option and the value in its messages as it
would have. FdSecrets.lend finds a /dev/fd/N so given (fdsecrets.py).
"""


def dashed(option):
    """--key-file for a docopt key, and for the argparse key key_file."""
    return option if option.startswith("-") else "--" + option.replace("_", "-")


def option_words(option, values):
    """--option=VALUE for each of `values`."""
    return [f"{option}={value}" for value in values]


def joined(options):
    """option_words for each (option, values) of `options` (a dict), in order."""
    return [word for option, values in options.items() for word in option_words(option, values)]
