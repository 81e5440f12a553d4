//! `esdk keystore create-store|create-key|version-key`: the administrator's commands over a
//! branch key store (`esdk::keystore`), the table the Hierarchical keyring (`--hierarchy`)
//! reads. AWS credentials and endpoints come from the standard environment.

use clap::{Args, Subcommand};
use esdk::keyring::kms::{AwsSdkClientSupplier, ClientSupplier, KmsArn};
use esdk::keystore::{KeyStore, KmsConfiguration};
use esdk_cli::keyspec;

use crate::Failure;

#[derive(Subcommand)]
pub(crate) enum KeystoreCommand {
    /// Create the store's DynamoDB table (partition key branch-key-id, sort key type, on-demand)
    /// unless it exists; an existing table must have that key schema. Prints the table ARN.
    CreateStore(StoreArgs),
    /// Create a branch key (its first version, the active copy and the beacon key) under the
    /// KMS key. Prints the new branch key id as its last line.
    CreateKey(CreateKeyArgs),
    /// Make a new active version of a branch key (older versions still decrypt). Prints the new
    /// version as its last line.
    VersionKey(VersionKeyArgs),
}

#[derive(Args)]
pub(crate) struct StoreArgs {
    /// The store's DynamoDB table.
    #[arg(long, value_name = "TABLE")]
    table: String,
    /// The logical store name bound to every key (default: the table name). Keep it for the
    /// table's whole life: keys created under one name do not unwrap under another.
    #[arg(long = "logical-name", value_name = "NAME")]
    logical_name: Option<String>,
    /// The KMS key ARN that wraps the branch keys.
    #[arg(long = "kms-key", value_name = "ARN")]
    kms_key: String,
    /// The Region of the table (default: the key ARN's; KMS is always called in the ARN's Region).
    #[arg(long, value_name = "REGION")]
    region: Option<String>,
}

#[derive(Args)]
pub(crate) struct CreateKeyArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The new key's id (default: a new UUID). A chosen id needs -c pairs.
    #[arg(long = "branch-key-id", value_name = "ID")]
    branch_key_id: Option<String>,
    /// Custom encryption context bound to the branch key (KMS sees it on every unwrap).
    #[arg(short = 'c', long = "encryption-context", num_args = 1.., value_name = "KEY=VALUE")]
    encryption_context: Vec<String>,
}

#[derive(Args)]
pub(crate) struct VersionKeyArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The branch key to rotate.
    #[arg(long = "branch-key-id", value_name = "ID")]
    branch_key_id: String,
}

/// A store client on `table` for the KMS key ARN `kms_key` (multi-Region aware when it is a
/// multi-Region key): KMS is called in the ARN's Region, DynamoDB in `region` or the ARN's.
pub(crate) fn open(table: &str, logical_name: &str, kms_key: &str, region: Option<&str>) -> Result<KeyStore, Failure> {
    let arn = KmsArn::parse_key_arn(kms_key).map_err(|e| Failure {
        message: format!("kms-key {kms_key}: {e}"),
        hint: Some("give the key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID)".into()),
    })?;
    let config = if arn.is_mrk() {
        KmsConfiguration::MrkKeyArn(kms_key.to_owned())
    } else {
        KmsConfiguration::KeyArn(kms_key.to_owned())
    };
    let table_region = region.unwrap_or(arn.region()).to_owned();
    let loader =
        aws_config::defaults(aws_config::BehaviorVersion::latest()).region(aws_config::Region::new(table_region));
    let sdk = crate::load_config(loader.load())?;
    let kms = AwsSdkClientSupplier::from_sdk_config(sdk.clone()).client(arn.region())?;
    Ok(KeyStore::new(table, logical_name, config, kms, aws_sdk_dynamodb::Client::new(&sdk))?)
}

fn open_args(a: &StoreArgs) -> Result<KeyStore, Failure> {
    open(&a.table, a.logical_name.as_deref().unwrap_or(&a.table), &a.kms_key, a.region.as_deref())
}

pub(crate) fn run(command: KeystoreCommand) -> Result<(), Failure> {
    // The store is made before the runtime: loading its configuration runs on a runtime of its own.
    let (store, command) = match &command {
        KeystoreCommand::CreateStore(a) => (open_args(a)?, command),
        KeystoreCommand::CreateKey(a) => (open_args(&a.store)?, command),
        KeystoreCommand::VersionKey(a) => (open_args(&a.store)?, command),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start an async runtime: {e}"))?;
    let table = store.info().table.clone();
    rt.block_on(async {
        match command {
            KeystoreCommand::CreateStore(_) => {
                let arn = store.create_key_store().await?;
                eprintln!("esdk: key store table {table} is ready");
                println!("{arn}");
            }
            KeystoreCommand::CreateKey(a) => {
                let context = keyspec::parse_context(&a.encryption_context).map_err(|e| format!("-c: {e}"))?;
                let id = store.create_key(a.branch_key_id.as_deref(), &context).await?;
                eprintln!("esdk: created branch key {id} in {table}");
                println!("{id}");
            }
            KeystoreCommand::VersionKey(a) => {
                let version = store.version_key(&a.branch_key_id).await?;
                eprintln!("esdk: branch key {} in {table} has the new active version {version}", a.branch_key_id);
                println!("{version}");
            }
        }
        Ok(())
    })
}
