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

  assert {
    condition     = output.platform.environment_schemas == true
    error_message = "Development and CI builds create their own schemas in the dev database (the transformer may CREATE SCHEMA there)."
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

run "no_powerbi_sso_without_a_tenant" {
  command = plan

  assert {
    condition     = output.platform.powerbi_sso == null
    error_message = "Without entra_tenant_id there is no SSO integration."
  }

  assert {
    condition     = length(output.platform.reporter_grantees.users) + length(output.platform.reporter_grantees.roles) == 0
    error_message = "The reporting role goes to no one else by default."
  }
}

run "powerbi_sso" {
  command = plan

  variables {
    entra_tenant_id   = "00000000-0000-4000-8000-000000000000"
    reporter_grantees = { users = ["ALICE@EXAMPLE.COM"], roles = ["ANALYSTS"] }
  }

  assert {
    condition = output.platform.powerbi_sso == {
      name          = "POWERBI_SSO_DEV"
      issuer        = "https://sts.windows.net/00000000-0000-4000-8000-000000000000/"
      jws_keys_url  = toset(["https://login.microsoftonline.com/00000000-0000-4000-8000-000000000000/discovery/v2.0/keys"])
      audience      = toset(["https://analysis.windows.net/powerbi/connector/Snowflake"])
      allowed_roles = toset(["REPORTER_DEV"])
    }
    error_message = "The SSO integration trusts the tenant's tokens for Power BI, for the reporting role only."
  }

  assert {
    condition     = output.platform.reporter_grantees == { users = tolist(["ALICE@EXAMPLE.COM"]), roles = tolist(["ANALYSTS"]) }
    error_message = "The reporting role goes to the listed users and roles."
  }
}

run "tenant_not_a_guid" {
  command = plan

  variables {
    entra_tenant_id = "contoso.onmicrosoft.com"
  }

  expect_failures = [var.entra_tenant_id]
}

run "admin_role_over_sso" {
  command = plan

  variables {
    entra_tenant_id     = "00000000-0000-4000-8000-000000000000"
    entra_allowed_roles = ["REPORTER_DEV", "accountadmin"]
  }

  expect_failures = [var.entra_allowed_roles]
}
