from . import earlysig

earlysig.hold()  # a SIGINT while encpipe.cli loads: delivered once run() has set its handlers

from .cli import run  # noqa: E402

run()
