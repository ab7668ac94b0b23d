variable "name" {
  type        = string
  description = "Warehouse name (upper case)."

  validation {
    condition     = can(regex("^[A-Z_][A-Z0-9_$]*$", var.name))
    error_message = "The warehouse name must be an upper-case unquoted identifier."
  }
}

variable "comment" {
  type        = string
  description = "What the warehouse is for."
}

variable "warehouse_size" {
  type        = string
  description = "Size: XSMALL, SMALL, MEDIUM, LARGE, ..."

  validation {
    condition     = contains(["XSMALL", "SMALL", "MEDIUM", "LARGE", "XLARGE", "XXLARGE"], var.warehouse_size)
    error_message = "warehouse_size must be one of XSMALL, SMALL, MEDIUM, LARGE, XLARGE, XXLARGE."
  }
}

variable "auto_suspend" {
  type        = number
  description = "Seconds of inactivity before the warehouse suspends."
  default     = 60
}

variable "max_cluster_count" {
  type        = number
  description = "Maximum clusters (more than 1 needs Enterprise edition)."
  default     = 1
}

variable "statement_timeout_in_seconds" {
  type        = number
  description = "Longest a statement may run on this warehouse before Snowflake cancels it."
  default     = 3600
}
