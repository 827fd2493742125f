"""Token ids as the text the HTTP front returns, and where each token starts in it.

Two renderings exist, as in vLLM: generated text leaves special tokens out
(the EOS a completion ends on is not text), while an echoed prompt and
`/detokenize` keep them (`<|user|>` is part of what the client sent). Logprob
`text_offset`s are computed from the same rendering as the text they index, so
`text[offset_i:]` starts with token i's text even when a prompt holds special
tokens.
"""

from __future__ import annotations

from functools import lru_cache


class TokenText:
    """Renders ids with a checkpoint tokenizer (checkpoint.tokenizer.Tokenizer protocol)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._special = lru_cache(maxsize=None)(self._is_special)

    def _is_special(self, token_id: int) -> bool:
        """A token plain decoding drops (decode skips special tokens) but that has text of its own."""
        return self.tokenizer.decode([token_id]) == "" and self.tokenizer.token_str(token_id) != ""

    def with_specials(self, ids: list[int]) -> str:
        """The ids' text, special tokens written out (runs of ordinary tokens decoded together)."""
        parts: list[str] = []
        run: list[int] = []
        for token_id in ids:
            if self._special(token_id):
                if run:
                    parts.append(self.tokenizer.decode(run))
                    run = []
                parts.append(self.tokenizer.token_str(token_id))
            else:
                run.append(token_id)
        if run:
            parts.append(self.tokenizer.decode(run))
        return "".join(parts)

    def plain(self, ids: list[int]) -> str:
        """The ids' text without special tokens (generated text)."""
        return self.tokenizer.decode(list(ids))

    def offsets(self, ids: list[int], *, specials: bool, start: int = 0) -> list[int]:
        """Where each token begins in the rendering of `ids` (plus `start`).

        Fast path: when the tokens' own renderings concatenate to the whole rendering, offsets are their
        running lengths; otherwise (tokens that merge on decode, partial characters) each offset is the
        length of the rendered prefix before the token, kept non-decreasing.
        """
        render = self.with_specials if specials else self.plain
        pieces = [render([token_id]) for token_id in ids]
        result: list[int] = []
        if "".join(pieces) == render(ids):
            position = start
            for piece in pieces:
                result.append(position)
                position += len(piece)
            return result
        position = start
        for i in range(len(ids)):
            position = max(position, start + len(render(ids[:i])))
            result.append(position)
        return result
