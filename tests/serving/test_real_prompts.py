"""The demo serves real prompts: a 4096-token context and any UTF-8 text (byte fallback).

Oracles nobody here wrote: transformers' AutoTokenizer reading the checkpoint's tokenizer files (the
round trip and the `<0xNN>` byte-token spelling of Llama's tokenizers), and the OpenAI SDK against the
served deployment (the echoed prompt comes back byte for byte, and so does a streamed answer).
"""

from __future__ import annotations

import pytest

from pytest_nemo_eval.checkpoint.demo_tokenizer import CONTEXT_LENGTH

# Accents, CJK, emoji (4 UTF-8 bytes), a tab and a carriage return: none is a character token of the demo.
UNICODE_TEXT = "Grüße, naïve café. 日本語の文章。 Emoji 🙂👍 tab\there\r\nend"


@pytest.fixture(scope="module")
def hf_tokenizer(demo_checkpoint):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(demo_checkpoint / "context" / "nemo_tokenizer"), local_files_only=True)


def test_any_utf8_text_round_trips_through_byte_tokens(hf_tokenizer):
    ids = hf_tokenizer(UNICODE_TEXT, add_special_tokens=False)["input_ids"]
    assert hf_tokenizer.decode(ids) == UNICODE_TEXT
    assert hf_tokenizer.unk_token_id not in ids
    tokens = hf_tokenizer.convert_ids_to_tokens(ids)
    assert tokens[tokens.index("G") + 2: tokens.index("G") + 4] == ["<0xC3>", "<0xBC>"]  # ü is C3 BC in UTF-8
    emoji = [f"<0x{byte:02X}>" for byte in "🙂".encode()]
    assert any(tokens[i: i + 4] == emoji for i in range(len(tokens)))


def test_the_checkpoint_and_its_tokenizer_declare_the_context(demo_checkpoint, hf_tokenizer):
    import yaml

    model_yaml = yaml.safe_load((demo_checkpoint / "context" / "model.yaml").read_text())
    assert model_yaml["config"]["seq_length"] == CONTEXT_LENGTH == hf_tokenizer.model_max_length >= 4096


def test_a_long_unicode_prompt_is_served_and_echoed_exactly(served_deployment, hf_tokenizer):
    import openai

    client = openai.OpenAI(base_url=served_deployment.url + "/v1", api_key="unused")
    model = client.models.list().data[0]
    assert model.model_dump().get("max_model_len") == CONTEXT_LENGTH
    prompt = (UNICODE_TEXT + "\n") * 45
    prompt_tokens = len(hf_tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert prompt_tokens > 3000  # most of the context
    completion = client.completions.create(model=model.id, prompt=prompt, max_tokens=CONTEXT_LENGTH - prompt_tokens,
                                           echo=True, temperature=0)
    assert completion.choices[0].text.startswith(prompt)
    assert completion.usage.prompt_tokens == prompt_tokens
    streamed = client.completions.create(model=model.id, prompt=prompt, max_tokens=8, temperature=0, stream=True)
    text = "".join(chunk.choices[0].text for chunk in streamed if chunk.choices)
    plain = client.completions.create(model=model.id, prompt=prompt, max_tokens=8, temperature=0)
    assert text == plain.choices[0].text
    assert "\ufffd" not in text or plain.choices[0].text.count("\ufffd") == text.count("\ufffd")


def test_a_prompt_past_the_context_is_refused_naming_it(served_deployment):
    import openai

    client = openai.OpenAI(base_url=served_deployment.url + "/v1", api_key="unused", max_retries=0)
    model = client.models.list().data[0].id
    with pytest.raises(openai.BadRequestError, match=str(CONTEXT_LENGTH)):
        client.completions.create(model=model, prompt="é" * (CONTEXT_LENGTH // 2 + 1), max_tokens=1)
