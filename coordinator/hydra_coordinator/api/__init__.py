"""HTTP surfaces, one router each."""
