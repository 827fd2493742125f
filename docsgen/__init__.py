"""The docs site's build-time generators (wired into mkdocs by docsgen/hooks.py): reference pages read from
the code, the troubleshooting list of `Diagnosis:` messages, drift checks over the hand-written pages, and
screenshots of a real run on the demo. Not part of the installed package."""
