"""Running the service: health, metrics, logs that carry no patient data."""
