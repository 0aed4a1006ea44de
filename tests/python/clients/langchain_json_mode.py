"""LangChain `with_structured_output(method="json_mode")` against modelway, as a user
writes it (the schema in the prompt, which json_mode leaves to the user): `invoke` and
`stream`. Run by test_clients.py in the `frameworks` venv:

    python langchain_json_mode.py BASE_URL API_KEY MODEL

Prints one JSON line: what each call returned.
"""

import json
import sys

from langchain_openai import ChatOpenAI
from pydantic import BaseModel


class City(BaseModel):
    city: str
    population: int


def main(base_url: str, api_key: str, model: str) -> None:
    llm = ChatOpenAI(
        model=model, base_url=base_url, api_key=api_key, max_retries=0, timeout=20, use_responses_api=False
    )
    structured = llm.with_structured_output(City, method="json_mode")
    messages = [
        ("system", f"Reply with a JSON object matching this schema: {json.dumps(City.model_json_schema())}"),
        ("human", "The biggest city of France?"),
    ]
    invoked = structured.invoke(messages)
    streamed = list(structured.stream(messages))
    print(json.dumps({
        "invoke": invoked.model_dump(),
        "stream": streamed[-1].model_dump() if streamed else None,
    }))


if __name__ == "__main__":
    main(*sys.argv[1:4])
