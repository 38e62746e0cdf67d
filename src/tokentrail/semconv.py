"""Every span attribute, metric and event name tokentrail emits, in one place.

Names follow the OpenTelemetry GenAI semantic conventions: the v1.41 baseline, with the names the
GenAI conventions have settled since (``gen_ai.usage.cache_write.input_tokens``, the audio and image
token counts, ``moonshot_ai``); the previous names are still set beside them for one release.
Metric renames still pending there are behind ``OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental``
(see :data:`LATEST_EXPERIMENTAL`). Cost has no standard yet: we follow the open proposal
(semantic-conventions-genai PR 443), ``gen_ai.usage.cost.*`` and ``gen_ai.client.operation.cost``.
Anything of our own lives under ``tokentrail.``. The README's attribute reference is generated
from the same facts; change a name here and only here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

# --- request (set at span start, so samplers see them) ---
OPERATION_NAME: Final = "gen_ai.operation.name"
PROVIDER_NAME: Final = "gen_ai.provider.name"
REQUEST_MODEL: Final = "gen_ai.request.model"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
REQUEST_STREAM: Final = "gen_ai.request.stream"
REQUEST_MAX_TOKENS: Final = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE: Final = "gen_ai.request.temperature"
REQUEST_TOP_P: Final = "gen_ai.request.top_p"
REQUEST_TOP_K: Final = "gen_ai.request.top_k"
REQUEST_FREQUENCY_PENALTY: Final = "gen_ai.request.frequency_penalty"
REQUEST_PRESENCE_PENALTY: Final = "gen_ai.request.presence_penalty"
REQUEST_STOP_SEQUENCES: Final = "gen_ai.request.stop_sequences"
REQUEST_SEED: Final = "gen_ai.request.seed"
REQUEST_CHOICE_COUNT: Final = "gen_ai.request.choice.count"
REQUEST_ENCODING_FORMATS: Final = "gen_ai.request.encoding_formats"
OUTPUT_TYPE: Final = "gen_ai.output.type"
OPENAI_REQUEST_SERVICE_TIER: Final = "openai.request.service_tier"

# --- response ---
RESPONSE_MODEL: Final = "gen_ai.response.model"
RESPONSE_ID: Final = "gen_ai.response.id"
RESPONSE_FINISH_REASONS: Final = "gen_ai.response.finish_reasons"
RESPONSE_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
OPENAI_RESPONSE_SERVICE_TIER: Final = "openai.response.service_tier"
ERROR_TYPE: Final = "error.type"

# --- Anthropic (provider-specific; the request and response names match the anthropic SDK's own) ---
ANTHROPIC_REQUEST_SERVICE_TIER: Final = "anthropic.request.service_tier"
ANTHROPIC_REQUEST_SPEED: Final = "anthropic.request.speed"
ANTHROPIC_THINKING_BUDGET_TOKENS: Final = "anthropic.thinking.budget_tokens"
ANTHROPIC_RESPONSE_SERVICE_TIER: Final = "anthropic.response.service_tier"
ANTHROPIC_RESPONSE_SPEED: Final = "anthropic.response.speed"
ANTHROPIC_RESPONSE_INFERENCE_GEO: Final = "anthropic.response.inference_geo"

# --- usage: totals contain their parts (see usage.py) ---
USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS: Final = "gen_ai.usage.cache_read.input_tokens"
USAGE_CACHE_WRITE_INPUT_TOKENS: Final = "gen_ai.usage.cache_write.input_tokens"
USAGE_REASONING_OUTPUT_TOKENS: Final = "gen_ai.usage.reasoning.output_tokens"
USAGE_AUDIO_INPUT_TOKENS: Final = "gen_ai.usage.audio.input_tokens"
USAGE_AUDIO_OUTPUT_TOKENS: Final = "gen_ai.usage.audio.output_tokens"
USAGE_IMAGE_INPUT_TOKENS: Final = "gen_ai.usage.image.input_tokens"
USAGE_CACHE_WRITE_1H_INPUT_TOKENS: Final = "tokentrail.usage.cache_write_1h.input_tokens"
USAGE_WEB_SEARCHES: Final = "tokentrail.usage.web_searches"
# The names of the previous release, still set beside the current ones until the next release
# (dashboards built on them keep working meanwhile): the v1.41 baseline's cache_creation, and our
# own names for what the conventions now name.
USAGE_CACHE_CREATION_INPUT_TOKENS: Final = "gen_ai.usage.cache_creation.input_tokens"
USAGE_CACHE_CREATION_1H_INPUT_TOKENS: Final = "tokentrail.usage.cache_creation_1h.input_tokens"
USAGE_INPUT_AUDIO_TOKENS: Final = "tokentrail.usage.input_audio_tokens"
USAGE_OUTPUT_AUDIO_TOKENS: Final = "tokentrail.usage.output_audio_tokens"
USAGE_INPUT_IMAGE_TOKENS: Final = "tokentrail.usage.input_image_tokens"
# What a provider bills, beside what the model processed (the gen_ai.usage.* figures), where the two
# differ (Cohere's billed_units: no default system prompt, no special tokens); the cost is computed on these.
USAGE_BILLED_INPUT_TOKENS: Final = "tokentrail.usage.billed_input_tokens"
USAGE_BILLED_OUTPUT_TOKENS: Final = "tokentrail.usage.billed_output_tokens"
USAGE_BILLED_SEARCH_UNITS: Final = "tokentrail.usage.billed_search_units"
USAGE_INCONSISTENT: Final = "tokentrail.usage.inconsistent"
USAGE_PROBLEMS: Final = "tokentrail.usage.problems"
USAGE_MISSING: Final = "tokentrail.usage.missing"

# --- cost (proposal PR 443 names; tokentrail extras under tokentrail.cost.*) ---
COST_AMOUNT: Final = "gen_ai.usage.cost.amount"
COST_CURRENCY: Final = "gen_ai.usage.cost.currency"
COST_SOURCE: Final = "gen_ai.usage.cost.source"
COST_SOURCE_PROVIDER: Final = "provider"
COST_SOURCE_LOCAL: Final = "local"
# Integer micro-dollars: the collector's tail_sampling numeric_attribute compares integers only.
COST_USD_MICROS: Final = "tokentrail.cost.usd_micros"
COST_INPUT: Final = "tokentrail.cost.input"
COST_OUTPUT: Final = "tokentrail.cost.output"
# Our own computation when the provider's reported cost is the one in COST_AMOUNT.
COST_LOCAL_ESTIMATE: Final = "tokentrail.cost.local_estimate"
PRICE_MODEL: Final = "tokentrail.price.model"
PRICE_PROVIDER: Final = "tokentrail.price.provider"
PRICE_SOURCE: Final = "tokentrail.price.source"
PRICE_UNPRICED: Final = "tokentrail.price.unpriced"
# Pricing itself failed (the exception type): unpriced for that reason, not for an unknown model.
PRICE_ERROR: Final = "tokentrail.price.error"
STREAM_INCOMPLETE: Final = "tokentrail.stream.incomplete"

# --- content (only with OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT) ---
# The content event is a log record (event name CONTENT_EVENT) emitted through the Logs API, in the
# call's span context, as the conventions and util-genai emit it.
INPUT_MESSAGES: Final = "gen_ai.input.messages"
OUTPUT_MESSAGES: Final = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS: Final = "gen_ai.system_instructions"
CONTENT_EVENT: Final = "gen_ai.client.inference.operation.details"

# --- attribution ---
AGENT_NAME: Final = "gen_ai.agent.name"
AGENT_ID: Final = "gen_ai.agent.id"
CONVERSATION_ID: Final = "gen_ai.conversation.id"
USER_ID: Final = "user.id"
SESSION_ID: Final = "session.id"
# Attribution key (``tokentrail.attribute(agent=...)``) -> span attribute. Semantic-convention names
# where one exists; the rest under the tokentrail. namespace. Free-form labels become
# tokentrail.label.<key>.
ATTRIBUTION_KEYS: Final[Mapping[str, str]] = {
    "pipeline": "tokentrail.pipeline",
    "phase": "tokentrail.phase",
    "role": "tokentrail.role",
    "agent": AGENT_NAME,
    "agent_id": AGENT_ID,
    "task": "tokentrail.task",
    "user": USER_ID,
    "session": SESSION_ID,
    "conversation": CONVERSATION_ID,
}
LABEL_PREFIX: Final = "tokentrail.label."


def attribution_attribute(key: str) -> str:
    """The span attribute of an attribution key (``label:<name>`` for a free-form label)."""
    if key.startswith("label:"):
        return LABEL_PREFIX + key[6:]
    return ATTRIBUTION_KEYS[key]


# --- roll-up spans: totals of the LLM calls inside a unit of work, set when it ends ---
# tokentrail.rollup.<figure> for each figure of the run summary (totals.SUMMARY_FIELDS).
ROLLUP_PREFIX: Final = "tokentrail.rollup."
ROLLUP_CALLS: Final = ROLLUP_PREFIX + "calls"
ROLLUP_INPUT_TOKENS: Final = ROLLUP_PREFIX + "input_tokens"
ROLLUP_OUTPUT_TOKENS: Final = ROLLUP_PREFIX + "output_tokens"
ROLLUP_CACHE_READ_TOKENS: Final = ROLLUP_PREFIX + "cache_read_tokens"
ROLLUP_CACHE_WRITE_TOKENS: Final = ROLLUP_PREFIX + "cache_write_tokens"
ROLLUP_REASONING_TOKENS: Final = ROLLUP_PREFIX + "reasoning_tokens"
ROLLUP_COST: Final = ROLLUP_PREFIX + "cost_usd"
ROLLUP_UNPRICED_CALLS: Final = ROLLUP_PREFIX + "unpriced_calls"
ROLLUP_ERRORS: Final = ROLLUP_PREFIX + "errors"

# --- budgets ---
BUDGET_THRESHOLD_EVENT: Final = "tokentrail.budget.threshold"
BUDGET_NAME: Final = "tokentrail.budget.name"
BUDGET_THRESHOLD: Final = "tokentrail.budget.threshold"
BUDGET_SPENT_USD: Final = "tokentrail.budget.spent_usd"
BUDGET_LIMIT_USD: Final = "tokentrail.budget.limit_usd"
METRIC_BUDGET_SPEND: Final = "tokentrail.budget.spend"
METRIC_BUDGET_REMAINING: Final = "tokentrail.budget.remaining"

# --- metric attribute ---
TOKEN_TYPE: Final = "gen_ai.token.type"
TOKEN_MODALITY: Final = "gen_ai.token.modality"

# --- metrics ---
METRIC_TOKEN_USAGE: Final = "gen_ai.client.token.usage"
METRIC_OPERATION_DURATION: Final = "gen_ai.client.operation.duration"
METRIC_TIME_TO_FIRST_CHUNK: Final = "gen_ai.client.operation.time_to_first_chunk"
METRIC_TIME_PER_OUTPUT_CHUNK: Final = "gen_ai.client.operation.time_per_output_chunk"
METRIC_OPERATION_COST: Final = "gen_ai.client.operation.cost"
# OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental: the GenAI conventions' pending usage
# metrics, in place of gen_ai.client.token.usage and tokentrail.client.token.parts. Histograms of
# input and output per call (no modality: percentiles across modalities do not add up), and counters
# of every token category by gen_ai.token.modality (a plain sum of one counter is meaningful).
STABILITY_OPT_IN: Final = "OTEL_SEMCONV_STABILITY_OPT_IN"
LATEST_EXPERIMENTAL: Final = "gen_ai_latest_experimental"
METRIC_INFERENCE_INPUT_TOKENS: Final = "gen_ai.client.inference.usage.input_tokens"
METRIC_INFERENCE_OUTPUT_TOKENS: Final = "gen_ai.client.inference.usage.output_tokens"
METRIC_DETAILED_INPUT_TOKENS: Final = "gen_ai.client.inference.usage.detailed.input_tokens"
METRIC_DETAILED_OUTPUT_TOKENS: Final = "gen_ai.client.inference.usage.detailed.output_tokens"
METRIC_DETAILED_CACHE_READ_TOKENS: Final = "gen_ai.client.inference.usage.detailed.cache_read.input_tokens"
METRIC_DETAILED_CACHE_WRITE_TOKENS: Final = "gen_ai.client.inference.usage.detailed.cache_write.input_tokens"
METRIC_DETAILED_REASONING_TOKENS: Final = "gen_ai.client.inference.usage.detailed.reasoning.output_tokens"
# Parts of the totals in gen_ai.client.token.usage (cache_read, cache_creation, reasoning): a
# separate counter so that summing gen_ai.client.token.usage never counts a token twice.
METRIC_TOKEN_PARTS: Final = "tokentrail.client.token.parts"
METRIC_UNPRICED_CALLS: Final = "tokentrail.client.unpriced_calls"
METRIC_INCONSISTENT_USAGE: Final = "tokentrail.client.inconsistent_usage"
METRIC_INSTRUMENTATION_ERRORS: Final = "tokentrail.instrumentation.errors"
# SDK requests tokentrail saw but could not classify as an LLM call (a new endpoint, a GET):
# counted, by SDK and endpoint, so a billed call that goes unrecorded is visible.
METRIC_UNRECOGNISED_CALLS: Final = "tokentrail.client.unrecognised_calls"
SDK_NAME: Final = "tokentrail.sdk"
SDK_ENDPOINT: Final = "tokentrail.endpoint"
ERROR_WHERE: Final = "tokentrail.where"  # on METRIC_INSTRUMENTATION_ERRORS: which part of tokentrail
# Attribution values folded into "_other" because a key reached its distinct-value cap.
METRIC_ATTRIBUTION_OVERFLOW: Final = "tokentrail.attribution.overflow"
OVERFLOW_VALUE: Final = "_other"
# Calls not written to the local ledger; attribute LEDGER_DROP_REASON = queue_full | write_error |
# bad_row | locked.
METRIC_LEDGER_DROPPED: Final = "tokentrail.ledger.dropped"
LEDGER_DROP_REASON: Final = "tokentrail.ledger.reason"

# Bucket advice. Tokens: powers of 4 up to 64M. Seconds: doubling from 10 ms to 81.92 s.
TOKEN_BUCKETS: Final = tuple(4**i for i in range(14))
DURATION_BUCKETS: Final = tuple(round(0.01 * 2**i, 2) for i in range(14))
# USD: from a hundredth of a cent (a small embedding) to $50 (a huge long-context call), in
# 1-2.5-5 steps so that p50/p95 of typical calls land between boundaries, not on a single one.
COST_BUCKETS: Final = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0,
)  # fmt: skip
