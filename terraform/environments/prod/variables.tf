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
