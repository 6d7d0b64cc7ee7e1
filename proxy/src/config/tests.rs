use super::*;
use crate::catalog::Catalog;
use resolve::NoSecrets;

fn load_str(text: &str) -> Result<Loaded, ConfigError> {
    load(
        text,
        1,
        "test",
        &Defaults::default(),
        &Catalog::builtin(),
        &NoSecrets,
    )
}

#[test]
fn unknown_routing_strategy_is_a_config_error() {
    let err = load_str("router_settings: {routing_strategy: fastest-please}")
        .err()
        .unwrap();
    assert!(err.to_string().contains("fastest-please"), "{err}");
}

#[test]
fn malformed_fallbacks_are_rejected() {
    let err = load_str("litellm_settings: {fallbacks: [{a: [b], c: [d]}]}")
        .err()
        .unwrap();
    assert!(err.to_string().contains("single-key"), "{err}");
}

#[test]
fn duplicate_ids_are_rejected() {
    let text = "model_list:\n- {model_name: a, litellm_params: {model: openai/x}, model_info: {id: same}}\n- {model_name: b, litellm_params: {model: openai/y}, model_info: {id: same}}\n";
    let err = load_str(text).err().unwrap();
    assert!(err.to_string().contains("same"), "{err}");
}

#[test]
fn type_errors_name_the_field() {
    let err =
        load_str("model_list: [{model_name: a, litellm_params: {model: openai/x, rpm: lots}}]")
            .err()
            .unwrap();
    assert!(
        err.to_string().contains("model_list[0].litellm_params"),
        "{err}"
    );
}

#[test]
fn unsupported_settings_are_named() {
    let loaded = load_str(
        "router_settings: {num_retries: 3, cooldown_time: 5, cache_responses: true}\ngeneral_settings: {database_url: x, master_key: k}\n",
    )
    .unwrap();
    let all = loaded.warnings.join("\n");
    assert!(all.contains("router_settings.cache_responses"), "{all}");
    assert!(!all.contains("num_retries"), "implemented now: {all}");
    assert!(all.contains("general_settings.database_url"), "{all}");
    assert!(!all.contains("master_key"), "{all}");
}

#[test]
fn the_master_key_can_come_from_the_environment_section() {
    let loaded = load_str(
        "environment_variables: {MG_TEST_KEY: sk-env}\ngeneral_settings: {master_key: os.environ/MG_TEST_KEY}\n",
    )
    .unwrap();
    let key = loaded.snapshot.settings.master_key.unwrap();
    assert_eq!(key.expose(), "sk-env");
}
