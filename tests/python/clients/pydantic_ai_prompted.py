"""pydantic-ai `PromptedOutput` against modelway (pydantic-ai puts the schema in its
instructions and sends `response_format: json_object`): `run_sync` and `run_stream`.
Run by test_clients.py in the `frameworks` venv:

    python pydantic_ai_prompted.py BASE_URL API_KEY MODEL

Prints one JSON line: what each run returned.
"""

import asyncio
import json
import sys

from pydantic import BaseModel
from pydantic_ai import Agent, PromptedOutput
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider


class City(BaseModel):
    city: str
    population: int


async def streamed(agent: Agent) -> City:
    async with agent.run_stream("The biggest city of France?") as result:
        return await result.get_output()


def main(base_url: str, api_key: str, model: str) -> None:
    chat = OpenAIChatModel(model, provider=OpenAIProvider(base_url=base_url, api_key=api_key))
    agent = Agent(chat, output_type=PromptedOutput(City))
    ran = agent.run_sync("The biggest city of France?")
    print(json.dumps({
        "run": ran.output.model_dump(),
        "stream": asyncio.run(streamed(agent)).model_dump(),
    }))


if __name__ == "__main__":
    main(*sys.argv[1:4])
