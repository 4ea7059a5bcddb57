"""The siamese encoder: energy functions, contrastive loss, networks and the model artifact."""
