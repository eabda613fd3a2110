"""The route map: every route of the MLflow server gets a guard decision, or is denied.

Flask routes are keyed by endpoint (view function) name, FastAPI-native routes by route name
(prefixed ``fastapi:``). Each maps to a :class:`RouteSpec`: the policy action and how the
request names its resource (a *resolver*). An endpoint missing from the map is denied, so an
MLflow upgrade that adds routes fails the route-coverage test instead of opening a hole.

Features the policy does not model (AI gateway, scorers, review queues, prompt optimisation,
GenAI datasets, issues, workspaces, webhooks, jobs, MCP servers, the assistant, GraphQL, trace
management) are server-admin only: fail closed until a policy section governs them.
"""

from __future__ import annotations

from dataclasses import dataclass

from mlflow_guard.core.policy import Action

R, L, G, P, A = Action.READ, Action.LOG, Action.REGISTER, Action.PROMOTE, Action.ADMIN


@dataclass(frozen=True)
class RouteSpec:
    """How one route is authorized.

    Attributes:
        action: the policy action; ``None`` for public/authenticated-only routes.
        resolver: name of the function in :mod:`mlflow_guard.server.resolve` that finds the
            resources (``public``: no authentication at all; ``authenticated``: any user).
    """

    action: Action | None
    resolver: str


def _s(action: Action | None, resolver: str) -> RouteSpec:
    return RouteSpec(action, resolver)


PUBLIC = _s(None, "public")
AUTHENTICATED = _s(None, "authenticated")
SERVER_ADMIN = _s(A, "server")

CORE: dict[str, RouteSpec] = {
    # UI shell and health: no credential needed (no data).
    "health": PUBLIC,
    "static": PUBLIC,
    "serve_static_file": PUBLIC,
    "serve": PUBLIC,
    "version": AUTHENTICATED,
    "_get_server_info": AUTHENTICATED,
    "serve_get_ui_telemetry": AUTHENTICATED,
    "serve_post_ui_telemetry": AUTHENTICATED,
    # Experiments
    "_get_experiment": _s(R, "experiment_id"),
    "_get_experiment_by_name": _s(R, "experiment_name"),
    "_create_experiment": _s(L, "experiment_create"),
    "_search_experiments": _s(R, "any_experiment"),
    "_delete_experiment": _s(A, "experiment_id"),
    "_restore_experiment": _s(A, "experiment_id"),
    "_update_experiment": _s(A, "experiment_rename"),
    "_set_experiment_tag": _s(L, "experiment_id"),
    "_delete_experiment_tag": _s(L, "experiment_id"),
    # Runs
    "_create_run": _s(L, "experiment_id"),
    "_update_run": _s(L, "run"),
    "_delete_run": _s(L, "run"),
    "_restore_run": _s(L, "run"),
    "_log_metric": _s(L, "run"),
    "_log_param": _s(L, "run"),
    "_set_tag": _s(L, "run"),
    "_delete_tag": _s(L, "run"),
    "_log_batch": _s(L, "run"),
    "_log_model": _s(L, "run"),
    "_log_inputs": _s(L, "run"),
    "_log_outputs": _s(L, "run"),
    "_get_run": _s(R, "run"),
    "_search_runs": _s(R, "experiment_ids"),
    "_list_artifacts": _s(R, "run"),
    "_get_metric_history": _s(R, "run"),
    "get_metric_history_bulk_interval_handler": _s(R, "run_ids"),
    "serve_get_metric_history_bulk_interval": _s(R, "run_ids"),
    "serve_get_metric_history_bulk": _s(R, "run_ids"),
    "_create_presigned_upload_url": _s(L, "run_or_logged_model"),
    "_create_presigned_download_url": _s(R, "run_or_logged_model"),
    "serve_artifacts": _s(R, "run"),
    "serve_upload_artifact": _s(L, "run"),
    "serve_search_datasets": _s(R, "experiment_ids"),
    # Logged models
    "_create_logged_model": _s(L, "logged_model_create"),
    "_finalize_logged_model": _s(L, "logged_model"),
    "_get_logged_model": _s(R, "logged_model"),
    "_delete_logged_model": _s(L, "logged_model"),
    "_search_logged_models": _s(R, "experiment_ids"),
    "_set_logged_model_tags": _s(L, "logged_model"),
    "_delete_logged_model_tag": _s(L, "logged_model"),
    "_list_logged_model_artifacts": _s(R, "logged_model"),
    "_log_logged_model_params": _s(L, "logged_model"),
    "serve_get_logged_model_artifact": _s(R, "logged_model"),
    # Traces written by clients (everything else on traces is server-admin)
    "_start_trace_v3": _s(L, "trace_create"),
    "fastapi:export_traces": _s(L, "otel"),
    # Model registry
    "_create_registered_model": _s(G, "model_name"),
    "_rename_registered_model": _s(A, "model_rename"),
    "_update_registered_model": _s(G, "model_name"),
    "_delete_registered_model": _s(A, "model_name"),
    "_get_registered_model": _s(R, "model_name"),
    "_search_registered_models": _s(R, "any_model"),
    "_get_latest_versions": _s(R, "model_name"),
    "_create_model_version": _s(G, "model_version_create"),
    "_update_model_version": _s(G, "model_name"),
    "_transition_stage": _s(P, "model_name"),
    "_delete_model_version": _s(A, "model_name"),
    "_get_model_version": _s(R, "model_name"),
    "_search_model_versions": _s(R, "any_model"),
    "_get_model_version_download_uri": _s(R, "model_name"),
    "_set_registered_model_tag": _s(G, "model_name"),
    "_set_model_version_tag": _s(G, "model_name"),
    "_delete_registered_model_tag": _s(G, "model_name"),
    "_delete_model_version_tag": _s(G, "model_name"),
    "_set_registered_model_alias": _s(P, "model_name"),
    "_delete_registered_model_alias": _s(P, "model_name"),
    "_get_model_version_by_alias": _s(R, "model_name"),
    "serve_model_version_artifact": _s(R, "model_name"),
    # Proxied artifacts (Flask and the FastAPI-native upload/download)
    "_download_artifact": _s(R, "artifact_path"),
    "_upload_artifact": _s(L, "artifact_path"),
    "fastapi:download_artifact": _s(R, "artifact_path"),
    "fastapi:upload_artifact": _s(L, "artifact_path"),
    "_list_artifacts_mlflow_artifacts": _s(R, "artifact_path"),
    "_delete_artifact_mlflow_artifacts": _s(A, "artifact_path"),
    "_create_multipart_upload_artifact": _s(L, "artifact_path"),
    "_complete_multipart_upload_artifact": _s(L, "artifact_path"),
    "_abort_multipart_upload_artifact": _s(L, "artifact_path"),
    "_get_presigned_download_url": _s(R, "artifact_path"),
    # FastAPI-native
    "fastapi:health": PUBLIC,
    "fastapi:get_server_info": AUTHENTICATED,
}

# Routes whose request bodies may carry tag keys (client writes of mlflow_guard.* are refused).
TAG_KEY_ENDPOINTS = frozenset(
    {
        "_set_tag",
        "_delete_tag",
        "_set_experiment_tag",
        "_delete_experiment_tag",
        "_set_registered_model_tag",
        "_delete_registered_model_tag",
        "_set_model_version_tag",
        "_delete_model_version_tag",
    }
)

# Every other route MLflow 3.17 defines: server-admin only (see the module docstring).
SERVER_ADMIN_ENDPOINTS = frozenset(
    {
        "_add_dataset_to_experiments_handler",
        "_add_guardrail_to_endpoint",
        "_add_items_to_review_queue",
        "_attach_model_to_gateway_endpoint",
        "_batch_get_trace_infos",
        "_batch_get_traces",
        "_calculate_trace_filter_correlation",
        "_cancel_job",
        "_cancel_prompt_optimization_job",
        "_create_assessment",
        "_create_budget_policy",
        "_create_dataset_handler",
        "_create_gateway_endpoint",
        "_create_gateway_endpoint_binding",
        "_create_gateway_guardrail",
        "_create_gateway_model_definition",
        "_create_gateway_secret",
        "_create_issue",
        "_create_label_schema",
        "_create_prompt_optimization_job",
        "_create_review_queue",
        "_create_webhook",
        "_create_workspace_handler",
        "_delete_assessment",
        "_delete_budget_policy",
        "_delete_dataset_handler",
        "_delete_dataset_records_handler",
        "_delete_dataset_tag_handler",
        "_delete_demo",
        "_delete_gateway_endpoint",
        "_delete_gateway_endpoint_binding",
        "_delete_gateway_endpoint_tag",
        "_delete_gateway_guardrail",
        "_delete_gateway_model_definition",
        "_delete_gateway_secret",
        "_delete_label_schema",
        "_delete_prompt_optimization_job",
        "_delete_review_queue",
        "_delete_scorer",
        "_delete_trace_tag",
        "_delete_trace_tag_v3",
        "_delete_traces",
        "_delete_webhook",
        "_delete_workspace_handler",
        "_deprecated_end_trace_v2",
        "_deprecated_get_trace_info_v2",
        "_deprecated_search_traces_v2",
        "_deprecated_start_trace_v2",
        "_detach_model_from_gateway_endpoint",
        "_generate_demo",
        "_get_assessment",
        "_get_budget_policy",
        "_get_dataset_experiment_ids_handler",
        "_get_dataset_handler",
        "_get_dataset_records_handler",
        "_get_gateway_endpoint",
        "_get_gateway_guardrail",
        "_get_gateway_model_definition",
        "_get_gateway_secret_info",
        "_get_issue",
        "_get_job",
        "_get_label_schema",
        "_get_label_schema_by_name",
        "_get_online_scoring_configs",
        "_get_or_create_user_queue",
        "_get_prompt_optimization_job",
        "_get_provider_config",
        "_get_review_queue",
        "_get_review_queue_by_name",
        "_get_scorer",
        "_get_secrets_config",
        "_get_trace",
        "_get_trace_info_v3",
        "_get_webhook",
        "_get_workspace_handler",
        "_graphql",
        "_invoke_genai_evaluate_handler",
        "_invoke_issue_detection_handler",
        "_invoke_scorer_handler",
        "_link_prompts_to_trace",
        "_link_traces_to_run",
        "_list_budget_policies",
        "_list_budget_windows",
        "_list_endpoint_guardrail_configs",
        "_list_gateway_endpoint_bindings",
        "_list_gateway_endpoints",
        "_list_gateway_guardrails",
        "_list_gateway_model_definitions",
        "_list_gateway_secrets",
        "_list_label_schemas",
        "_list_review_queue_items",
        "_list_review_queues",
        "_list_scorer_versions",
        "_list_scorers",
        "_list_supported_models",
        "_list_supported_providers",
        "_list_webhooks",
        "_list_workspaces_handler",
        "_not_implemented",
        "_query_trace_metrics",
        "_register_scorer",
        "_remove_dataset_from_experiments_handler",
        "_remove_guardrail_from_endpoint",
        "_remove_items_from_review_queue",
        "_search_evaluation_datasets_handler",
        "_search_issues",
        "_search_prompt_optimization_jobs",
        "_search_traces_v3",
        "_set_dataset_tags_handler",
        "_set_gateway_endpoint_tag",
        "_set_review_queue_item_status",
        "_set_trace_tag",
        "_set_trace_tag_v3",
        "_test_webhook",
        "_update_assessment",
        "_update_budget_policy",
        "_update_endpoint_guardrail_config",
        "_update_gateway_endpoint",
        "_update_gateway_model_definition",
        "_update_gateway_secret",
        "_update_issue",
        "_update_label_schema",
        "_update_review_queue",
        "_update_webhook",
        "_update_workspace_handler",
        "_upsert_dataset_records_handler",
        "_upsert_online_scoring_config",
        "serve_create_promptlab_run",
        "serve_gateway_proxy",
        "serve_get_trace_artifact",
        "fastapi:anthropic_passthrough_messages",
        "fastapi:cancel_job",
        "fastapi:chat_completions",
        "fastapi:create_mcp_access_endpoint",
        "fastapi:create_mcp_server",
        "fastapi:create_mcp_server_version",
        "fastapi:delete_mcp_access_endpoint",
        "fastapi:delete_mcp_server",
        "fastapi:delete_mcp_server_alias",
        "fastapi:delete_mcp_server_tag",
        "fastapi:delete_mcp_server_version",
        "fastapi:delete_mcp_server_version_tag",
        "fastapi:gemini_passthrough_generate_content",
        "fastapi:gemini_passthrough_stream_generate_content",
        "fastapi:get_config",
        "fastapi:get_job",
        "fastapi:get_mcp_access_endpoint",
        "fastapi:get_mcp_server",
        "fastapi:get_mcp_server_version",
        "fastapi:get_providers",
        "fastapi:get_version_by_alias",
        "fastapi:install_skills_endpoint",
        "fastapi:invocations",
        "fastapi:list_models",
        "fastapi:list_provider_models",
        "fastapi:openai_passthrough_chat",
        "fastapi:openai_passthrough_embeddings",
        "fastapi:openai_passthrough_responses",
        "fastapi:openai_passthrough_responses_compact",
        "fastapi:patch_session",
        "fastapi:provider_health_check",
        "fastapi:raw_proxy",
        "fastapi:resolve_client_tool_result",
        "fastapi:resolve_permission",
        "fastapi:search_all_access_endpoints",
        "fastapi:search_jobs",
        "fastapi:search_mcp_server_versions",
        "fastapi:search_mcp_servers",
        "fastapi:search_server_access_endpoints",
        "fastapi:send_message",
        "fastapi:set_mcp_server_alias",
        "fastapi:set_mcp_server_tag",
        "fastapi:set_mcp_server_version_tag",
        "fastapi:stream_response",
        "fastapi:submit_job",
        "fastapi:typesafe_passthrough_system_one",
        "fastapi:update_config",
        "fastapi:update_mcp_access_endpoint",
        "fastapi:update_mcp_server",
        "fastapi:update_mcp_server_version",
    }
)

# Guard's own REST namespace (/api/2.0/mlflow-guard/...): see mlflow_guard.server.guard_api.
GUARD_API: dict[str, RouteSpec] = {}


def register_guard_route(endpoint: str, spec: RouteSpec) -> None:
    """Give a guard (or extension) endpoint its decision; called when blueprints are mounted."""
    GUARD_API[endpoint] = spec


def spec_for(endpoint: str | None) -> RouteSpec | None:
    """The decision recipe of an endpoint, or ``None`` when it is unmapped (deny)."""
    if endpoint is None:
        return None
    if endpoint in CORE:
        return CORE[endpoint]
    if endpoint in GUARD_API:
        return GUARD_API[endpoint]
    if endpoint in SERVER_ADMIN_ENDPOINTS:
        return SERVER_ADMIN
    return None
