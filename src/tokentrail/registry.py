"""Every provider tokentrail instruments, declared once.

A provider is one module under ``tokentrail.providers`` (its patches and pure readers, see
``providers/_contract.py``) plus one :class:`ProviderEntry` here. Everything else derives from
this table: what ``instrument()`` patches and when (``_setup``), the ``opentelemetry-instrument``
instrumentor classes (``instrumentation``), the per-provider options (``config``) and the README's
table of instrumented SDKs (``python -m tokentrail.registry``). The only other place a provider is
named is its ``opentelemetry_instrumentor`` entry point in ``pyproject.toml`` (and the
``instruments-any`` floor); ``tests/test_registry.py`` holds the three together.

Pure data: importing this module imports no provider module and no SDK.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PROVIDERS", "Option", "ProviderEntry", "entry", "readme_table"]


@dataclass(frozen=True, slots=True)
class Option:
    """A setting that belongs to one provider: ``instrument(<provider>_<name>=...)`` or the
    environment variable ``TOKENTRAIL_<PROVIDER>_<NAME>``."""

    name: str
    choices: tuple[tuple[str, str], ...]
    """``(value, what it means)``; the first is the default."""

    @property
    def default(self) -> str:
        return self.choices[0][0]


@dataclass(frozen=True, slots=True)
class ProviderEntry:
    """What tokentrail needs to know about a provider before its SDK (or module) is imported."""

    name: str
    """The name in ``instrument(providers=[...])`` and ``tokentrail.instrumented()``."""
    sdk_module: str
    """The module whose import means the application uses the SDK: patching waits for it."""
    distribution: str
    """The SDK's PyPI distribution."""
    floor: str
    """The oldest SDK version supported and tested (``instruments-any``)."""
    implementation: str
    """The provider module: its ``patches()`` returns what to install."""
    instrumentor: str
    """The ``opentelemetry-instrument`` class in ``tokentrail.instrumentation``."""
    title: str
    """What it instruments, for docstrings and the README."""
    covers: str
    """The calls it records, for the README."""
    options: tuple[Option, ...] = ()

    @property
    def requirement(self) -> str:
        """The requirement ``opentelemetry-instrument`` checks (``openai >= 1.40``)."""
        return f"{self.distribution} >= {self.floor}"

    def setting(self, option: Option) -> str:
        """The ``instrument()`` keyword of one of its options (``anthropic_native_spans``)."""
        return f"{self.name}_{option.name}"

    def variable(self, option: Option) -> str:
        """The environment variable of one of its options (``TOKENTRAIL_ANTHROPIC_NATIVE_SPANS``)."""
        return f"TOKENTRAIL_{self.name.upper()}_{option.name.upper()}"


PROVIDERS: tuple[ProviderEntry, ...] = (
    ProviderEntry(
        name="openai",
        sdk_module="openai",
        distribution="openai",
        floor="1.40",
        implementation="tokentrail.providers.openai",
        instrumentor="OpenAIInstrumentor",
        title="the `openai` SDK (and every OpenAI-compatible provider reached through it)",
        covers="chat completions, Responses, embeddings, legacy completions; streams, raw and "
        "streaming responses",
    ),
    ProviderEntry(
        name="anthropic",
        sdk_module="anthropic",
        distribution="anthropic",
        floor="0.43",
        implementation="tokentrail.providers.anthropic",
        instrumentor="AnthropicInstrumentor",
        title="the `anthropic` SDK (Anthropic API, Bedrock and Vertex AI clients)",
        covers="messages (and beta messages), streams and the `messages.stream()` helpers, raw responses",
        options=(
            Option(
                "native_spans",
                (
                    ("off", "tokentrail's span only"),
                    ("keep", "the anthropic SDK's own span too, as a child of tokentrail's, without cost"),
                ),
            ),
        ),
    ),
    ProviderEntry(
        name="google_genai",
        sdk_module="google.genai",
        distribution="google-genai",
        floor="1.8",
        implementation="tokentrail.providers.google_genai",
        instrumentor="GoogleGenAIInstrumentor",
        title="the `google-genai` SDK (Gemini API and Vertex AI)",
        covers="generate_content (and streams), embed_content, chats",
    ),
    ProviderEntry(
        name="groq",
        sdk_module="groq",
        distribution="groq",
        floor="0.30",
        implementation="tokentrail.providers.groq",
        instrumentor="GroqInstrumentor",
        title="the `groq` SDK (GroqCloud)",
        covers="chat completions (stream usage from `x_groq.usage`), embeddings; streams, raw responses",
    ),
    ProviderEntry(
        name="bedrock",
        sdk_module="botocore",
        distribution="boto3",
        floor="1.37.24",
        implementation="tokentrail.providers.bedrock",
        instrumentor="BedrockInstrumentor",
        title="boto3's `bedrock-runtime` client (Amazon Bedrock)",
        covers="converse, converse_stream, invoke_model (Anthropic, Nova, Titan, Llama, gpt-oss bodies; "
        "token-count headers otherwise), invoke_model_with_response_stream (invocation metrics)",
    ),
    ProviderEntry(
        name="mistral",
        sdk_module="mistralai.client",
        distribution="mistralai",
        floor="2.0",
        implementation="tokentrail.providers.mistral",
        instrumentor="MistralInstrumentor",
        title="the `mistralai` SDK (Mistral AI)",
        covers="chat, FIM and agent completions (and their streams), embeddings",
        options=(
            Option(
                "native_spans",
                (
                    ("off", "tokentrail's span only"),
                    ("keep", "the mistralai SDK's own span too, as a child of tokentrail's, without cost"),
                ),
            ),
        ),
    ),
    ProviderEntry(
        name="cohere",
        sdk_module="cohere",
        distribution="cohere",
        floor="5.16",
        implementation="tokentrail.providers.cohere",
        instrumentor="CohereInstrumentor",
        title="the `cohere` SDK (`ClientV2` and the v1 `Client`)",
        covers="chat (and streams), embed, rerank; priced on the billed units",
    ),
    ProviderEntry(
        name="together",
        sdk_module="together",
        distribution="together",
        floor="2.0",
        implementation="tokentrail.providers.together",
        instrumentor="TogetherInstrumentor",
        title="the `together` SDK (Together AI)",
        covers="chat completions and legacy completions (stream usage from the last chunk), embeddings; "
        "streams, raw responses",
    ),
    ProviderEntry(
        name="ollama",
        sdk_module="ollama",
        distribution="ollama",
        floor="0.4.7",
        implementation="tokentrail.providers.ollama",
        instrumentor="OllamaInstrumentor",
        title="the `ollama` SDK (a local or self-hosted Ollama server)",
        covers="chat, generate (and their NDJSON streams), embed, embeddings; priced through overrides",
    ),
    ProviderEntry(
        name="langchain",
        sdk_module="langchain_core",
        distribution="langchain-core",
        floor="0.3.10",
        implementation="tokentrail.providers.langchain",
        instrumentor="LangChainInstrumentor",
        title="LangChain and LangGraph (`langchain-core`): any chat model, graph and node spans",
        covers="every chat model and LLM run; LangGraph nodes as roll-up spans naming the agent",
    ),
    ProviderEntry(
        name="litellm",
        sdk_module="litellm",
        distribution="litellm",
        floor="1.100",
        implementation="tokentrail.providers.litellm",
        instrumentor="LiteLLMInstrumentor",
        title="LiteLLM (`litellm`): one API over a hundred providers, and its `Router`",
        covers="completion, text_completion, embedding, responses (sync, async, streams) and the Router; "
        "counted by the SDK layer underneath when there is one (openai), else from LiteLLM's usage",
    ),
    ProviderEntry(
        name="crewai",
        sdk_module="crewai",
        distribution="crewai",
        floor="1.15.30",
        implementation="tokentrail.providers.crewai",
        instrumentor="CrewAIInstrumentor",
        title="CrewAI (`crewai`): crews, agents and tasks naming every model call",
        covers="every LLM call of a crew (native clients and the LiteLLM fallback); crew kickoffs and "
        "each agent's task as roll-up spans naming the agent, task and crew",
    ),
    ProviderEntry(
        name="openai_agents",
        sdk_module="agents",
        distribution="openai-agents",
        floor="0.20",
        implementation="tokentrail.providers.openai_agents",
        instrumentor="OpenAIAgentsInstrumentor",
        title="the OpenAI Agents SDK (`openai-agents`): agents, handoffs, their model calls",
        covers="`Runner.run` / `run_sync` / `run_streamed`: each agent as a roll-up span naming its "
        "calls; model calls the SDK below does not count, from the SDK's own usage",
    ),
    ProviderEntry(
        name="pydantic_ai",
        sdk_module="pydantic_ai",
        distribution="pydantic-ai-slim",
        floor="2.31",
        implementation="tokentrail.providers.pydantic_ai",
        instrumentor="PydanticAIInstrumentor",
        title="PydanticAI (`pydantic-ai-slim`): agent runs and their model requests",
        covers="`Agent.run` / `run_sync` / `run_stream` / `iter` as roll-up spans naming their calls; "
        "model requests the SDK below does not count, from PydanticAI's own usage",
    ),
)

_BY_NAME = {provider.name: provider for provider in PROVIDERS}


def entry(name: str) -> ProviderEntry:
    """The provider called ``name``; KeyError if there is none."""
    return _BY_NAME[name]


def readme_table() -> str:
    """The README's table of instrumented SDKs (between its ``providers-table`` markers)."""
    lines = [
        "| `providers=[...]` | SDK | oldest supported | `opentelemetry-instrument` entry point | records "
        "| options |",
        "|---|---|---|---|---|---|",
    ]
    for provider in PROVIDERS:
        options = ", ".join(
            f"`{provider.setting(option)}` / `{provider.variable(option)}`: "
            + " \\| ".join(f"`{value}`" for value, _ in option.choices)
            for option in provider.options
        )
        lines.append(
            f"| `{provider.name}` | `{provider.distribution}` | {provider.floor} "
            f"| `tokentrail_{provider.name}` | {provider.covers} | {options or '-'} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m tokentrail.registry: the README table
    print(readme_table(), end="")
