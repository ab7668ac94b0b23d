# terraform test: a plan against a mock provider (no account, no network), so the whole
# configuration is evaluated: every module input, for_each and the generated Bronze columns.
mock_provider "snowflake" {}

variables {
  loader_rsa_public_key      = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAmockloader"
  transformer_rsa_public_key = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAmocktransformer"
  reporting_rsa_public_key   = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAmockreporting"
  service_user_allowed_ips   = ["203.0.113.0/24", "198.51.100.7"]
}

run "plan" {
  command = plan

  assert {
    condition     = output.platform.bronze_tables == sort(keys(jsondecode(file("../../modules/bronze_tables/tables.json")).tables))
    error_message = "Terraform must create exactly the Bronze tables of tables.json."
  }

  assert {
    condition     = output.platform.database == "RETAIL_DEV" && output.platform.roles == { loader = "LOADER_DEV", transformer = "TRANSFORMER_DEV", reporting = "REPORTER_DEV" }
    error_message = "Unexpected database or role names."
  }

  assert {
    condition     = output.platform.service_users == { loader = "RETAIL_LOADER_DEV", transformer = "RETAIL_TRANSFORMER_DEV", reporting = "RETAIL_REPORTER_DEV" }
    error_message = "Unexpected service user names."
  }

  assert {
    condition     = output.platform.warehouses == { loader = "LOADING_DEV", transformer = "TRANSFORMING_DEV", reporting = "REPORTING_DEV" }
    error_message = "Unexpected warehouse names."
  }

  assert {
    condition     = output.platform.network_policy == { name = "RETAIL_SERVICE_USERS_DEV", users = { loader = "RETAIL_SERVICE_USERS_DEV", transformer = "RETAIL_SERVICE_USERS_DEV", reporting = "RETAIL_SERVICE_USERS_DEV" } }
    error_message = "Every service user must have the environment's network policy."
  }
}

run "no_network_policy" {
  command = plan

  variables {
    service_user_allowed_ips = []
  }

  assert {
    condition     = output.platform.network_policy.name == null
    error_message = "An empty allowed list means no network policy."
  }
}
