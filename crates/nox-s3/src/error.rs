//! nox-s3's errors that have a cause of their own; they reach nox through
//! [`nox_core::Error::backend`], which keeps them (and what is underneath) as the source.

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The S3 client would not take the access key and secret.
    #[error("S3 credentials: {0}")]
    Credentials(#[source] s3::creds::error::CredentialsError),
}

impl From<S3Error> for nox_core::Error {
    fn from(e: S3Error) -> Self {
        nox_core::Error::backend(e)
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use s3::creds::error::CredentialsError;

    use super::*;

    #[test]
    fn a_credentials_error_stays_reachable_as_the_cause() {
        let e: nox_core::Error = S3Error::Credentials(CredentialsError::ConfigNotFound).into();
        assert_eq!(e.to_string(), "S3 credentials: Config not found");
        let s3 = e.source().expect("the S3 error");
        assert!(s3.is::<S3Error>());
        let creds = s3.source().expect("the client's error");
        assert!(matches!(
            creds.downcast_ref::<CredentialsError>(),
            Some(CredentialsError::ConfigNotFound)
        ));
        assert!(!e.is_bad_input());
    }
}
