"""instructor `Mode.JSON` against modelway (instructor writes the schema into the system
prompt and sends `response_format: json_object`): a plain call and a partial stream.
Run by test_clients.py in the `instructor` venv:

    python instructor_json.py BASE_URL API_KEY MODEL

Prints one JSON line: what each call returned.
"""

import json
import sys

import instructor
import openai
from pydantic import BaseModel


class City(BaseModel):
    city: str
    population: int


def main(base_url: str, api_key: str, model: str) -> None:
    client = instructor.from_openai(
        openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0, timeout=20), mode=instructor.Mode.JSON
    )
    messages = [{"role": "user", "content": "The biggest city of France?"}]
    city = client.chat.completions.create(model=model, response_model=City, messages=messages, max_retries=1)
    partials = list(
        client.chat.completions.create_partial(model=model, response_model=City, messages=messages, max_retries=1)
    )
    print(json.dumps({
        "create": city.model_dump(),
        "partial": partials[-1].model_dump() if partials else None,
    }))


if __name__ == "__main__":
    main(*sys.argv[1:4])
