variable "database" {
  type        = string
  description = "Name of the database holding the Bronze schema."
}

variable "schema" {
  type        = string
  description = "Name of the Bronze schema the tables are created in."

  validation {
    condition     = var.schema == "BRONZE"
    error_message = "The loader writes to BRONZE (retail_pipeline.warehouse.snowflake.SCHEMA)."
  }
}

variable "data_retention_time_in_days" {
  type        = number
  description = "Time Travel retention of the Bronze tables; null inherits the schema's."
  default     = null
}

variable "change_tracking" {
  type        = bool
  description = "Whether change tracking is on (needed for streams on Bronze)."
  default     = false
}
