"""The official openai Python SDK against a running modelgate proxy: exactly what an
in-cluster OpenAI client does."""

import openai
import pytest
from conftest import KEY


@pytest.fixture()
def client(proxy):
    return openai.OpenAI(base_url=f"{proxy}/v1", api_key=KEY, max_retries=0)


def test_chat(client):
    r = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert r.model == "gpt-4o"
    assert r.choices[0].message.content == "Hello from the mock upstream."
    assert r.usage.total_tokens == 15


def test_chat_through_aliases_reports_the_alias(client):
    for name in ["gpt-4", "secret-alias"]:
        raw = client.chat.completions.with_raw_response.create(
            model=name, messages=[{"role": "user", "content": "hi"}]
        )
        assert raw.headers["x-litellm-model-group"] == name
        assert raw.parse().model == name


def test_streaming(client):
    stream = client.chat.completions.create(
        model="gpt-4",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 "
    assert all(c.model == "gpt-4" for c in chunks)
    assert chunks[-1].usage is not None


def test_embeddings(client):
    r = client.embeddings.create(model="embed", input=["hello", "world"])
    assert r.model == "embed"
    assert len(r.data[0].embedding) == 4


def test_models_list_and_retrieve(client):
    ids = {m.id for m in client.models.list()}
    assert ids == {"gpt-4", "gpt-4o", "embed", "ratelimited", "down"}
    assert client.models.retrieve("gpt-4").id == "gpt-4"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("secret-alias")


def test_errors_map_to_sdk_exceptions(proxy, client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert "Invalid model name passed in model=nope" in str(e.value)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{proxy}/v1", api_key="sk-wrong", max_retries=0).models.list()
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="ratelimited", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.InternalServerError) as e:
        client.chat.completions.create(model="down", messages=[{"role": "user", "content": "hi"}])
    assert "APIConnectionError" in str(e.value)
    with pytest.raises(openai.APIStatusError) as e:
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x" * (2 * 1024 * 1024)}]
        )
    assert e.value.status_code == 413


def test_bad_json_is_a_bad_request(proxy):
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        f"{proxy}/v1/chat/completions",
        data=b'{"model":',
        headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req)
    assert e.value.code == 400
    assert b"Invalid JSON payload" in e.value.read()
