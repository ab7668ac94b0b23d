variable "database" {
  type        = string
  description = "Name of the database the schema is created in."
}

variable "name" {
  type        = string
  description = "Schema name (upper case: the pipeline and dbt refer to it unquoted)."

  validation {
    condition     = can(regex("^[A-Z_][A-Z0-9_$]*$", var.name))
    error_message = "The schema name must be an upper-case unquoted identifier."
  }
}

variable "comment" {
  type        = string
  description = "Comment shown in Snowflake."
}

variable "data_retention_time_in_days" {
  type        = number
  description = "Time Travel retention of the schema and the default of its tables."
}

variable "with_managed_access" {
  type        = bool
  description = "Whether the schema is a managed access schema (grants on its objects only by the schema owner)."
  default     = true
}
