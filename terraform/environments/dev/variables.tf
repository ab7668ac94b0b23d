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
