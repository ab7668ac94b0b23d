variable "loader_rsa_public_key" {
  type        = string
  description = "Public key of the loader's service user: the one-line base64 body of its PEM (TF_VAR_loader_rsa_public_key)."
}

variable "transformer_rsa_public_key" {
  type        = string
  description = "Public key of the transformer's (dbt's) service user: the one-line base64 body of its PEM."
}

variable "reporting_rsa_public_key" {
  type        = string
  description = "Public key of the reporting service user: the one-line base64 body of its PEM."
}

variable "service_user_allowed_ips" {
  type        = list(string)
  description = "IPv4 addresses or CIDR ranges the service users may sign in from (the hosts of the loaders, dbt and the reporting tools), as TF_VAR_service_user_allowed_ips='[\"203.0.113.0/24\"]'. No default: an empty list ('[]') is an explicit choice of no network policy (key pair only), docs/terraform.md."
}

variable "reporter_grantees" {
  type = object({
    users = optional(list(string), [])
    roles = optional(list(string), [])
  })
  description = "Existing users and roles to grant the reporting role to, so people read Gold from Power BI (e.g. SSO users provisioned by SCIM), as TF_VAR_reporter_grantees='{ users = [\"ALICE@EXAMPLE.COM\"] }'. Empty by default."
  default     = {}
}

variable "entra_tenant_id" {
  type        = string
  description = "Directory (tenant) ID of the Microsoft Entra ID tenant Power BI users sign in with (a GUID): creates the Power BI SSO integration. null (the default): no integration."
  default     = null

  validation {
    condition     = var.entra_tenant_id == null || can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", var.entra_tenant_id))
    error_message = "entra_tenant_id is the tenant's GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), or null for no integration."
  }
}

variable "entra_allowed_roles" {
  type        = list(string)
  description = "Roles a Power BI SSO session may run with (a user's default role must be one of them). null (the default): the environment's reporting role only. Never an administrator role."
  default     = null

  validation {
    condition     = var.entra_allowed_roles == null || length(setintersection([for role in coalesce(var.entra_allowed_roles, []) : upper(role)], ["ACCOUNTADMIN", "SECURITYADMIN", "ORGADMIN", "GLOBALORGADMIN", "USERADMIN", "SYSADMIN"])) == 0
    error_message = "entra_allowed_roles may not hold an administrator role (ACCOUNTADMIN, SECURITYADMIN, ORGADMIN, GLOBALORGADMIN, USERADMIN, SYSADMIN): a report needs only the reporting role."
  }
}
