output "integration" {
  description = "The Power BI SSO integration (null without a tenant): its name, issuer, audience and allowed roles."
  value = one([
    for integration in snowflake_external_oauth_integration.this : {
      name          = integration.name
      issuer        = integration.external_oauth_issuer
      jws_keys_url  = integration.external_oauth_jws_keys_url
      audience      = integration.external_oauth_audience_list
      allowed_roles = integration.external_oauth_allowed_roles_list
    }
  ])
}
