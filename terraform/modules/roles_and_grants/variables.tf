variable "database" {
  type        = string
  description = "Name of the pipeline's database."
}

variable "bronze_schema" {
  type        = string
  description = "Fully qualified name of the Bronze schema (\"DB\".\"BRONZE\"): the loader writes it, the transformer reads it."
}

variable "silver_schema" {
  type        = string
  description = "Fully qualified name of the Silver schema: the transformer builds it."
}

variable "gold_schema" {
  type        = string
  description = "Fully qualified name of the Gold schema: the transformer builds it, reporting reads it."
}

variable "test_failures_schema" {
  type        = string
  description = "Fully qualified name of the schema dbt keeps failing test rows in (store_failures views)."
}

variable "roles" {
  type = object({
    loader      = string
    transformer = string
    reporting   = string
  })
  description = "Names of the three account roles."
}

variable "warehouses" {
  type = object({
    loader      = string
    transformer = string
    reporting   = string
  })
  description = "Name of the warehouse each role runs on (it gets USAGE on that one only)."
}

variable "service_users" {
  type = map(object({
    name             = string
    rsa_public_key   = string
    rsa_public_key_2 = optional(string)
  }))
  description = "The service user of each role: its name and key-pair public key(s) (the base64 body of the PEM, one line; rsa_public_key_2 for rotation). Private keys never come here."

  validation {
    condition = alltrue([
      for user in values(var.service_users) :
      length(user.rsa_public_key) > 0 && !can(regex("-----|\\s", user.rsa_public_key)) && !can(regex("-----|\\s", coalesce(user.rsa_public_key_2, "x")))
    ])
    error_message = "Public keys are the one-line base64 body of the PEM, without the BEGIN/END lines (and not empty)."
  }

  validation {
    condition     = toset(keys(var.service_users)) == toset(["loader", "transformer", "reporting"])
    error_message = "One service user for each role: loader, transformer and reporting."
  }
}

variable "network_policy" {
  type = object({
    name            = string
    allowed_ip_list = list(string)
  })
  description = "Network policy of the three service users: its name and the IPv4 addresses or CIDR ranges they may sign in from (where the loaders, dbt and the reporting tools run). An empty list is an explicit choice: no policy, the users are reachable from anywhere with their key pair."

  validation {
    condition = alltrue([
      for address in var.network_policy.allowed_ip_list :
      can(regex("^([0-9]{1,3}\\.){3}[0-9]{1,3}(/[0-9]{1,2})?$", address)) && !startswith(address, "0.0.0.0/")
    ])
    error_message = "Allowed addresses are IPv4 addresses or CIDR ranges, and not 0.0.0.0/n (an empty list is how to allow every address)."
  }
}

variable "reporter_grantees" {
  type = object({
    users = optional(list(string), [])
    roles = optional(list(string), [])
  })
  description = "Existing users and roles the reporting role is granted to, besides its service user (people who read Gold from Power BI, e.g. SSO users provisioned by SCIM). Empty by default."
  default     = {}

  validation {
    condition     = alltrue([for name in concat(var.reporter_grantees.users, var.reporter_grantees.roles) : length(trimspace(name)) > 0 && !strcontains(name, "\"")])
    error_message = "reporter_grantees names users and roles by name: not empty, no double quotes."
  }
}

variable "parent_role" {
  type        = string
  description = "Role the three roles are granted to, so administrators inherit them."
  default     = "SYSADMIN"
}

variable "environment_schemas" {
  type        = bool
  description = "Whether the transformer may create schemas in the database: the <PREFIX>_SILVER, <PREFIX>_GOLD and <PREFIX>_TEST_FAILURES that development and CI builds write (docs/transform.md#environments). It owns, and so can build in and drop, only the schemas it creates; the production schemas keep exactly their grants."
  default     = false
}
