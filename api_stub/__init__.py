"""SimplyPNG control plane: jobs, credits, dispatch to Runpod and the signed callback receiver."""
