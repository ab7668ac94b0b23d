# Power BI single sign-on with Microsoft Entra ID (docs/powerbi.md#logging-in-from-power-bi): an
# external OAuth security integration that accepts the tokens Entra ID issues to Power BI for
# Snowflake, maps each to the Snowflake user whose LOGIN_NAME is the token's upn claim, and lets
# the session take only the allowed roles. Created only when a tenant is given.
#
# Where each value comes from (Snowflake, "Power BI SSO to Snowflake"; Microsoft Entra ID's
# token and OpenID metadata):
#   issuer    the iss claim of an Entra ID v1.0 access token, https://sts.windows.net/<tenant>/
#             (with the trailing slash: Snowflake compares it as a string).
#   jws keys  the tenant's signing keys (its OpenID configuration's jwks_uri).
#   audience  the aud claim Power BI asks Entra ID for when it connects to Snowflake.

locals {
  powerbi_audience = "https://analysis.windows.net/powerbi/connector/Snowflake"
}

resource "snowflake_external_oauth_integration" "this" {
  count = var.entra_tenant_id == null ? 0 : 1

  name                                            = var.name
  comment                                         = "Power BI SSO with Microsoft Entra ID (retail-pipeline): ${join(", ", var.allowed_roles)} only."
  enabled                                         = true
  external_oauth_type                             = "AZURE"
  external_oauth_issuer                           = "https://sts.windows.net/${var.entra_tenant_id}/"
  external_oauth_jws_keys_url                     = ["https://login.microsoftonline.com/${var.entra_tenant_id}/discovery/v2.0/keys"]
  external_oauth_audience_list                    = [local.powerbi_audience]
  external_oauth_token_user_mapping_claim         = ["upn"]
  external_oauth_snowflake_user_mapping_attribute = "LOGIN_NAME"
  # The session runs with the user's default role, which must be one of these; the token cannot
  # ask for another.
  external_oauth_allowed_roles_list = var.allowed_roles
  external_oauth_any_role_mode      = "DISABLE"
}
