"""Model management and hardware for admins (``/api/admin/models|engines|hardware``)."""
