//! Model management over HTTP (`/model/new`, `/model/update`, `/model/delete`, LiteLLM's
//! bodies): each call creates, patches or deletes a ModelDeployment resource, so a model
//! added through the API is declared state like any other and reaches every replica the
//! same way, through the operator and the ConfigMap. Admin-only, and off unless switched on.

use crate::{error::ApiError, state::AppState};
use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};
use modelgate_crds::{
    ModelDeployment, ModelDeploymentSpec,
    model_deployment::{ModelInfo, SecretKeyRef},
};
use serde_json::{Map, Value, json};

const MANAGER: &str = "modelgate-proxy";

/// Where API-managed ModelDeployments live.
pub struct ModelStore {
    api: Api<ModelDeployment>,
    namespace: String,
}

impl ModelStore {
    pub fn new(client: Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
        }
    }
}

fn store(state: &AppState) -> Result<&ModelStore, ApiError> {
    let snap = crate::handlers::snapshot(state)?;
    if snap.settings.master_key.is_none() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "Model management needs a master key (general_settings.master_key or LITELLM_MASTER_KEY)",
        ));
    }
    state.model_store.get().ok_or_else(|| {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            "Model management over HTTP is switched off; start the proxy with --configmap and --model-management, or declare a ModelDeployment",
        )
    })
}

fn kube_error(e: kube::Error) -> ApiError {
    match &e {
        kube::Error::Api(s) if s.code == 404 => ApiError::not_found(s.message.clone()),
        kube::Error::Api(s) if s.code == 409 => ApiError::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            s.message.clone(),
        ),
        // The API server's validation (CRD schema, CEL rules) explains what is wrong.
        kube::Error::Api(s) if s.code == 422 || s.code == 400 => {
            ApiError::bad_request(s.message.clone())
        }
        kube::Error::Api(s) if s.code == 403 => ApiError::new(
            StatusCode::FORBIDDEN,
            "permission_error",
            format!("the proxy's ServiceAccount may not do this: {}", s.message),
        ),
        _ => ApiError::internal(format!("Kubernetes API: {e}")),
    }
}

fn parse(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("The body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!(
            "The body is not valid JSON: {e}"
        ))),
    }
}

/// The response LiteLLM gives for a stored model.
fn describe(md: &ModelDeployment) -> Value {
    json!({
        "model_id": md.name_any(),
        "model_name": md.spec.model_name,
        "litellm_params": {"model": md.spec.model},
        "model_info": {"id": md.name_any()},
        "created_by": MANAGER,
        "updated_by": MANAGER,
        "resource": format!("modeldeployments.modelgate.dev/{}", md.name_any()),
    })
}

/// `POST /model/new`.
pub async fn new_model(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let store = store(&state)?;
    let body = parse(&body)?;
    let (name, spec) = super::manage_spec::from_litellm(&body, None)?;
    let name = name.unwrap_or_else(|| super::manage_spec::generated_name(&spec.model_name));
    let mut md = ModelDeployment::new(&name, spec);
    md.metadata.namespace = Some(store.namespace.clone());
    md.metadata.labels = Some(
        [(
            "app.kubernetes.io/created-by".to_string(),
            MANAGER.to_string(),
        )]
        .into(),
    );
    let created = store
        .api
        .create(&PostParams::default(), &md)
        .await
        .map_err(kube_error)?;
    tracing::info!(name = %created.name_any(), "ModelDeployment created over HTTP");
    Ok((StatusCode::OK, Json(describe(&created))).into_response())
}

/// `POST /model/update`: `model_info.id` names the deployment; given fields are merged.
pub async fn update_model(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let store = store(&state)?;
    let body = parse(&body)?;
    let id = body
        .get("model_info")
        .and_then(|m| m.get("id"))
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("model_info.id is required").with_param("model_info"))?
        .to_string();
    let current = store.api.get(&id).await.map_err(kube_error)?;
    let (_, spec) = super::manage_spec::from_litellm(&body, Some(&current.spec))?;
    let patch = json!({"spec": spec});
    let updated = store
        .api
        .patch(&id, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(kube_error)?;
    tracing::info!(name = %id, "ModelDeployment updated over HTTP");
    Ok(Json(describe(&updated)).into_response())
}

/// `POST /model/delete`: body `{"id": "<model_id>"}`.
pub async fn delete_model(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let store = store(&state)?;
    let body = parse(&body)?;
    let id = body
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::bad_request("id is required").with_param("id"))?;
    store
        .api
        .delete(id, &DeleteParams::default())
        .await
        .map_err(kube_error)?;
    tracing::info!(name = %id, "ModelDeployment deleted over HTTP");
    Ok(Json(json!({"message": format!("Model: {id} deleted successfully")})).into_response())
}

/// Used by `manage_spec` to build a reference from `secret/<name>/<key>`.
pub(super) fn secret_ref(reference: &str) -> Option<SecretKeyRef> {
    let (name, key) = reference.strip_prefix("secret/")?.split_once('/')?;
    (!name.is_empty() && !key.is_empty()).then(|| SecretKeyRef {
        name: name.to_string(),
        key: key.to_string(),
    })
}

pub(super) type Spec = ModelDeploymentSpec;
pub(super) type Info = ModelInfo;
