variable "database" {
  type = object({
    name           = string
    retention_days = number
  })
  description = "The pipeline's database (SNOWFLAKE_DATABASE) and its Time Travel retention in days."
}

variable "schema_retention_days" {
  type = object({
    bronze        = number
    silver        = number
    gold          = number
    test_failures = number
  })
  description = "Time Travel retention in days of each layer's schema (the names are fixed: BRONZE, SILVER, GOLD, TEST_FAILURES)."
}

variable "warehouses" {
  type = map(object({
    name         = string
    size         = string
    auto_suspend = number
  }))
  description = "The warehouse of each role (loader, transformer, reporting): its name, size and seconds before it suspends."

  validation {
    condition     = toset(keys(var.warehouses)) == toset(["loader", "transformer", "reporting"])
    error_message = "One warehouse for each role: loader, transformer and reporting."
  }
}

variable "roles" {
  type        = map(string)
  description = "Name of each role's account role, by role: loader, transformer, reporting (roles_and_grants requires all three)."
}

variable "service_users" {
  type = map(object({
    name             = string
    rsa_public_key   = string
    rsa_public_key_2 = optional(string)
  }))
  description = "The service user of each role (loader, transformer, reporting): its name and public key(s), as roles_and_grants takes them."
}

variable "network_policy" {
  type = object({
    name            = string
    allowed_ip_list = list(string)
  })
  description = "Network policy of the service users, as roles_and_grants takes it: its name and the IPv4 addresses or CIDR ranges allowed (an empty list: no policy, an explicit choice)."
}

variable "reporter_grantees" {
  type = object({
    users = optional(list(string), [])
    roles = optional(list(string), [])
  })
  description = "Existing users and roles the reporting role is granted to, as roles_and_grants takes them (people reading Gold from Power BI)."
  default     = {}
}

variable "powerbi_sso" {
  type = object({
    integration_name = string
    entra_tenant_id  = optional(string)
    allowed_roles    = optional(list(string))
  })
  description = "Power BI SSO with Entra ID, as the powerbi_sso module takes it: the integration's name, the tenant (null: no integration) and the roles a session may use (null: the reporting role only)."
}

variable "environment_schemas" {
  type        = bool
  description = "Whether development and CI builds may create their own <PREFIX>_SILVER, <PREFIX>_GOLD and <PREFIX>_TEST_FAILURES in this database (the transformer gets CREATE SCHEMA on it), as roles_and_grants takes it."
  default     = false
}
