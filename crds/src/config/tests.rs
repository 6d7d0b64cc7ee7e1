use super::*;

const LITELLM_ALIAS: &str = r#"
model_list:
  - model_name: model-group-1
    litellm_params:
      model: openai/gpt-4o
      api_base: http://127.0.0.1:18080/v1
      api_key: "sk-fake"
      temperature: 0.2
    model_info:
      id: dep-1
      team: research
  - model_name: broken
    rpm: 10
    litellm_params:
      model: openai/gpt-4o
      timeout: "30"
router_settings:
  routing_strategy: simple-shuffle
  model_group_alias:
    alias-1: model-group-1
    hidden-alias:
      model: model-group-1
      hidden: true
  redis_host: os.environ/REDIS_HOST
litellm_settings:
  fallbacks:
    - broken: ["model-group-1"]
general_settings:
  master_key: sk-1234
  store_model_in_db: false
"#;

#[test]
fn parses_a_litellm_config_with_both_alias_forms() {
    let cfg = Config::from_yaml(LITELLM_ALIAS).unwrap();
    assert_eq!(cfg.model_list.len(), 2);
    let first = &cfg.model_list[0];
    assert_eq!(first.litellm_params.model, "openai/gpt-4o");
    assert_eq!(
        first.litellm_params.extra["temperature"],
        serde_json::json!(0.2)
    );
    assert_eq!(first.model_info["team"], "research");
    assert_eq!(
        cfg.model_list[1].litellm_params.timeout,
        Some(Seconds(30.0))
    );
    assert_eq!(cfg.model_list[1].extra["rpm"], 10);

    let aliases = &cfg.router_settings.model_group_alias;
    assert_eq!(aliases["alias-1"].group(), "model-group-1");
    assert!(!aliases["alias-1"].hidden());
    assert_eq!(aliases["hidden-alias"].group(), "model-group-1");
    assert!(aliases["hidden-alias"].hidden());
    assert_eq!(
        cfg.router_settings.extra["redis_host"],
        "os.environ/REDIS_HOST"
    );
    assert_eq!(cfg.general_settings.master_key.as_deref(), Some("sk-1234"));
    assert!(cfg.general_settings.extra.contains_key("store_model_in_db"));
}

#[test]
fn round_trips_without_losing_keys() {
    let cfg = Config::from_yaml(LITELLM_ALIAS).unwrap();
    let again = Config::from_yaml(&cfg.to_yaml().unwrap()).unwrap();
    assert_eq!(cfg, again);
}

#[test]
fn empty_file_is_an_empty_config() {
    assert_eq!(Config::from_yaml("  \n").unwrap(), Config::default());
}

#[test]
fn negative_timeouts_are_rejected() {
    let err = Config::from_yaml(
        "model_list: [{model_name: a, litellm_params: {model: openai/x, timeout: -1}}]",
    )
    .unwrap_err();
    assert!(err.to_string().contains("non-negative"), "{err}");
}

#[test]
fn missing_model_is_rejected() {
    let err = Config::from_yaml("model_list: [{model_name: a, litellm_params: {}}]").unwrap_err();
    assert!(err.to_string().contains("model"), "{err}");
}
