"""The chat route's parts: one typed message model (messages.py), prompt rendering with tools and template
kwargs (prompt.py), structured-output and tool-choice constraints (constraints.py), and the reply shaping of
tool calls, plain and streamed (replies.py). Output formats live one file per family in serving/tool_parsers/.
"""
