variable "name" {
  type        = string
  description = "Name of the security integration (upper case; unique among the account's security integrations)."

  validation {
    condition     = can(regex("^[A-Z_][A-Z0-9_]*$", var.name))
    error_message = "The integration name must be an upper-case unquoted identifier."
  }
}

variable "entra_tenant_id" {
  type        = string
  description = "Directory (tenant) ID of the Microsoft Entra ID tenant Power BI users sign in with, a GUID. null: no integration."
  default     = null

  validation {
    condition     = var.entra_tenant_id == null || can(regex("^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$", var.entra_tenant_id))
    error_message = "entra_tenant_id is the tenant's GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), or null for no integration."
  }
}

variable "allowed_roles" {
  type        = list(string)
  description = "Roles a Power BI session may run with (the user's default role must be one of them): the reporting role. Never an administrator role."

  validation {
    condition     = length(var.allowed_roles) > 0 && alltrue([for role in var.allowed_roles : can(regex("^[A-Za-z_][A-Za-z0-9_$]*$", role))])
    error_message = "allowed_roles lists at least one role, each an unquoted role name."
  }

  validation {
    condition     = length(setintersection([for role in var.allowed_roles : upper(role)], ["ACCOUNTADMIN", "SECURITYADMIN", "ORGADMIN", "GLOBALORGADMIN", "USERADMIN", "SYSADMIN"])) == 0
    error_message = "allowed_roles may not hold an administrator role (ACCOUNTADMIN, SECURITYADMIN, ORGADMIN, GLOBALORGADMIN, USERADMIN, SYSADMIN): a report needs only the reporting role."
  }
}
