variable "name" {
  type        = string
  description = "Database name (upper case: the pipeline and dbt refer to it unquoted)."

  validation {
    condition     = can(regex("^[A-Z_][A-Z0-9_$]*$", var.name))
    error_message = "The database name must be an upper-case unquoted identifier."
  }
}

variable "comment" {
  type        = string
  description = "Comment shown in Snowflake."
  default     = "Retail pipeline: Bronze, Silver and Gold (managed by Terraform)."
}

variable "data_retention_time_in_days" {
  type        = number
  description = "Time Travel retention of the database, the default of its schemas and tables (more than 1 needs Enterprise edition)."
}
